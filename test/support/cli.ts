/** Runs the `kairos` command from source in a child process: what a user sees, exit code, stdout and stderr. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

export interface CliResult {
  /** Exit code; null when the child was killed (it did not exit by itself within the timeout). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `kairos <args>` with `env` added to this process's environment (a value of undefined removes it), in
 * `cwd`, killing it after `timeoutMs` (then `code` is null).
 */
export function runCli(args: readonly string[], env: Readonly<Record<string, string | undefined>> = {}, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const merged: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  // tsx resolved from here, so the command may run in any directory.
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'src', 'cli', 'bin.ts'), ...args], {
    cwd: opts.cwd ?? root,
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Lines of a Node stack trace or an uncaught-error dump. */
export const STACK_TRACE = /^\s+at .+\(?.*:\d+:\d+\)?$|node:internal|triggerUncaughtException|^Node\.js v\d+/m;
