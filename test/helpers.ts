import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temporary directory, removed when the returned disposer runs. */
export function tempDir(prefix = 'kairos-test-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `pollMs` until it holds; fails the test naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000, pollMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(pollMs);
  }
}

/**
 * The runtime variables of a test instance on `brokers` that joins and rebalances its group quickly: no
 * idempotent producer (librdkafka's mock cluster), short fetch waits, short session and heartbeat.
 */
export function fastGroupEnv(brokers: string): Record<string, string> {
  return { KAFKA_BROKERS: brokers, KAFKA_IDEMPOTENT: 'false', KAFKA_MAX_WAIT_MS: '100', KAFKA_SESSION_TIMEOUT_MS: '6000', KAFKA_HEARTBEAT_MS: '500' };
}
