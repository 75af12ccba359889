/** Runs `kairos start` from source in a child process (so a test can kill -9 it). */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

export interface ChildInstance {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** host:port of its HTTP server (metrics, query API), from the banner it prints when ready. */
  readonly address: string;
}

export async function startChild(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<ChildInstance> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src', 'cli', 'bin.ts'), 'start'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (c: string) => {
    err += c;
  });
  // Logs (pino, stdout) are kept with stderr for diagnostics.
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (c: string) => {
    err += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`instance not ready in ${readyTimeoutMs} ms: ${err.slice(-2000)}`)), readyTimeoutMs);
    const check = (): void => {
      if (err.includes('kairos: running against')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`instance exited (${String(code)}) before it was ready: ${err.slice(-2000)}`));
    });
  });
  const address = /metrics and health on http:\/\/([^;\s]+)/.exec(err)?.[1];
  if (address === undefined) throw new Error(`instance printed no address: ${err.slice(-2000)}`);
  return { child, stderr: () => err, exited, address };
}
