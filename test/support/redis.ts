/** A real redis-server per test file: a free port, started as a child process, stopped (or killed) by PID. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit (no shutdown save). */
  kill(): Promise<void>;
}

export interface RedisServerOptions {
  readonly port?: number;
  /** A directory for an append-only file with fsync on every write, so data survives SIGKILL. */
  readonly aofDir?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitForPing(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    client.on('error', () => undefined);
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      // not up yet (or still loading the AOF)
    } finally {
      client.disconnect();
    }
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', ''];
  if (opts.aofDir === undefined) args.push('--appendonly', 'no');
  else args.push('--appendonly', 'yes', '--appendfsync', 'always', '--dir', opts.aofDir);
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPing(port, child);
  const pid = child.pid as number;
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(pid, signal);
    await exited;
  };
  return { port, url: `redis://127.0.0.1:${port}`, pid, stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
}
