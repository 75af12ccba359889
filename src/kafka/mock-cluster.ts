/**
 * librdkafka's mock cluster, started through Debian's `kcat` (which links librdkafka): a real Kafka-protocol
 * broker in a child process, for tests and the embedded demo. It auto-creates topics with 4 partitions and
 * supports produce, fetch, consumer groups and offsets, but not CreateTopics, idempotence or transactions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { KairosError } from '../errors.js';

export interface MockCluster {
  /** host:port of every mock broker. */
  readonly brokers: string[];
  readonly pid: number;
  stop(): Promise<void>;
}

/** Whether `kcat` is installed (the mock cluster needs it). */
export function mockClusterAvailable(kcat = 'kcat'): boolean {
  const r = spawnSync(kcat, ['-V'], { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/**
 * Runs kcat ("$@") in the background and waits: ends with it, and kills it once the Node process that started
 * it ($PPID) is gone. SIGTERM to the group ends both.
 */
const WATCHDOG = 'p=$PPID; "$@" & k=$!; trap \'kill $k 2>/dev/null; exit 0\' TERM; while kill -0 $k 2>/dev/null; do kill -0 $p 2>/dev/null || { kill $k; exit 0; }; sleep 1; done; wait $k';

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

export function startMockCluster(options: { brokers?: number; kcat?: string; timeoutMs?: number } = {}): Promise<MockCluster> {
  const kcat = options.kcat ?? 'kcat';
  // In its own process group (detached), so a terminal's Ctrl-C reaches only Kairos, which then stops in order
  // and stops the cluster last; a watchdog shell ends kcat when this process is gone (even after kill -9).
  const child: ChildProcess = spawn('sh', ['-c', WATCHDOG, 'kairos-mock-cluster', kcat, '-b', 'mock:1', '-X', `test.mock.num.brokers=${options.brokers ?? 3}`, '-d', 'mock', '-C', '-t', 'kairos-mock-keepalive', '-q'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  return new Promise<MockCluster>((resolve, reject) => {
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new KairosError('KAIROS_ERR_KAFKA', `kcat mock cluster did not report its brokers within ${options.timeoutMs ?? 10_000} ms: ${stderr.slice(-500)}`));
    }, options.timeoutMs ?? 10_000);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new KairosError('KAIROS_ERR_KAFKA', `cannot start the mock Kafka cluster (${kcat}): ${err.message}; install Debian's kcat`, { cause: err }));
    };
    child.once('error', onError);
    child.stderr?.setEncoding('utf8');
    const onData = (chunk: string): void => {
      stderr += chunk;
      const m = /bootstrap\.servers=(\S+)/.exec(stderr);
      if (!m?.[1]) return;
      clearTimeout(timer);
      child.off('error', onError);
      // Keep draining stderr (debug output) so the child never blocks on a full pipe.
      child.stderr?.off('data', onData);
      child.stderr?.resume();
      const pid = child.pid as number;
      resolve({
        brokers: m[1].split(','),
        pid,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            // The whole group: the watchdog shell and kcat.
            killGroup(pid, 'SIGTERM');
            setTimeout(() => {
              if (child.exitCode === null && child.signalCode === null) killGroup(pid, 'SIGKILL');
            }, 2000).unref();
          }),
      });
    };
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new KairosError('KAIROS_ERR_KAFKA', `kcat mock cluster exited (code ${String(code)}) before it was ready: ${stderr.slice(-500)}`));
    });
  });
}
