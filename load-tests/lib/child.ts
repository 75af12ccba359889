/**
 * A `kairos start` child process for the benchmarks that run Kairos as it is deployed (kafka-throughput's child
 * mode, chaos, kafka-vs-replay, api-latency): spawned with the given environment, ready once it prints its
 * start-up banner, its output kept (the last 20 kB; all of it in `logDir` when it exits), its stdout lines (pino
 * JSON) handed to `onLine`, stopped with SIGTERM and, past a timeout, SIGKILL. `startProgram` is the same for any
 * program that prints a line when it is ready (kafka-throughput's --peer).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT } from './common.js';
import { assertFreshDist } from './engine-build.js';

/** What `kairos start` prints on stderr once it serves (src/cli/main.ts). */
export const READY_BANNER = 'kairos: running against';
/** `node` arguments that run the CLI from the sources. */
export const SOURCE_COMMAND: readonly string[] = ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'bin.ts'), 'start'];

/**
 * How a benchmark starts `kairos start`: from the compiled dist/ (`dist`: as bin/kairos.js runs it when deployed;
 * dist/ checked fresh first) or from the TypeScript sources through tsx. tsx compiles with esbuild's keepNames, which
 * wraps every function expression in a call that defines its name: a closure made per request or record costs
 * about 0.6 µs more than in the compiled build (load-tests/README.md, issue 17).
 */
export function kairosStartCommand(dist: boolean): readonly string[] {
  if (!dist) return SOURCE_COMMAND;
  assertFreshDist();
  return [join(REPO_ROOT, 'bin', 'kairos.js'), 'start'];
}

export interface ChildOptions {
  readonly label: string;
  /** Set over this process's environment. */
  readonly env: Readonly<Record<string, string>>;
  /** @default 90000 */
  readonly readyTimeoutMs?: number;
  /** Writes the child's whole output to `<logDir>/<label>-<pid>.log` when it exits. */
  readonly logDir?: string | undefined;
  /** Copies the child's output to this process's stderr as it comes. */
  readonly echo?: boolean;
  /** Every output chunk, stdout and stderr. */
  readonly onOutput?: (chunk: string) => void;
  /** Every complete stdout line (pino's JSON log lines). */
  readonly onLine?: (line: string) => void;
  /** Called with the process as soon as it is spawned (an exit hook that kills it). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

export interface KairosChildOptions extends ChildOptions {
  /** `node` arguments: @default SOURCE_COMMAND */
  readonly command?: readonly string[];
}

export interface ProgramOptions extends ChildOptions {
  readonly file: string;
  readonly args: readonly string[];
  /** @default this process's */
  readonly cwd?: string;
  /** What the program prints once it is ready, and on which stream. */
  readonly ready: string | RegExp;
  readonly readyOn: 'stdout' | 'stderr';
}

export interface Child {
  readonly label: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Resolves with the exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** The last 20 kB of its output. */
  tail(): string;
  running(): boolean;
  /** SIGTERM, then SIGKILL after `timeoutMs`; 'killed' when it had to be. */
  stop(timeoutMs?: number): Promise<number | null | 'killed'>;
}

export interface KairosChild extends Child {
  /** `http://host:port` of its metrics and health endpoints, from the banner. */
  readonly url: string | undefined;
}

/** Spawns `kairos start` and resolves once it is ready; rejects if it exits first or is not ready in time. */
export async function startKairos(o: KairosChildOptions): Promise<KairosChild> {
  const child = await startProgram({ ...o, file: process.execPath, args: o.command ?? SOURCE_COMMAND, cwd: REPO_ROOT, ready: READY_BANNER, readyOn: 'stderr' });
  return { ...child, url: /metrics and health on (http:\/\/[^\s;]+)/.exec(child.tail())?.[1] };
}

/** Spawns a program and resolves once it prints `ready`; rejects if it exits first or is not ready in time. */
export async function startProgram(o: ProgramOptions): Promise<Child> {
  const child = spawn(o.file, [...o.args], {
    ...(o.cwd === undefined ? {} : { cwd: o.cwd }),
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  o.onSpawn?.(child);
  let tail = '';
  let partial = '';
  const full: string[] = [];
  const keep = (s: string): void => {
    tail = (tail + s).slice(-20_000);
    if (o.logDir !== undefined) full.push(s);
    if (o.echo === true) process.stderr.write(s);
    o.onOutput?.(s);
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', keep);
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    keep(chunk);
    if (o.onLine === undefined) return;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) o.onLine(line);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      if (o.logDir !== undefined) writeFileSync(join(o.logDir, `${o.label}-${child.pid ?? 0}.log`), full.join(''));
      resolve(code);
    }),
  );
  const readyTimeoutMs = o.readyTimeoutMs ?? 90_000;
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${o.label} not ready within ${readyTimeoutMs} ms: ${tail.slice(-2000)}`));
    }, readyTimeoutMs);
    const stream = o.readyOn === 'stdout' ? child.stdout : child.stderr;
    const check = (c: string): void => {
      seen += c;
      if (typeof o.ready === 'string' ? !seen.includes(o.ready) : !o.ready.test(seen)) return;
      clearTimeout(timer);
      stream.off('data', check);
      resolve();
    };
    stream.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${o.label} exited (${String(code)}) before it was ready: ${tail.slice(-2000)}`));
    });
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    label: o.label,
    pid: child.pid as number,
    process: child,
    exited,
    tail: () => tail,
    running,
    stop: async (timeoutMs = 20_000) => {
      if (!running()) return child.exitCode;
      child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
      if (code !== 'timeout') return code;
      child.kill('SIGKILL');
      await exited;
      return 'killed';
    },
  };
}
