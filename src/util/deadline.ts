/** Bounded waiting for shutdown paths: a stop must end even when the broker or Redis is gone. */
import type { Logger } from 'pino';

/**
 * Waits for `p` until the epoch-ms `deadline`. Resolves with its value, or with undefined once the deadline has
 * passed (logged as `what` not finished); `p` goes on in the background and a later rejection is only logged.
 */
export async function untilDeadline<T>(p: Promise<T>, deadline: number, what: string, logger: Logger): Promise<{ done: true; value: T } | { done: false }> {
  const guarded = p.then(
    (value) => ({ done: true as const, value }),
    (err: unknown) => {
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, `${what} failed`);
      return { done: false as const };
    },
  );
  const left = deadline - Date.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ done: false }>((resolve) => {
    timer = setTimeout(() => {
      logger.warn({ waitedMs: Math.max(0, left) }, `${what} did not finish before the stop deadline; going on without it`);
      resolve({ done: false });
    }, Math.max(0, left));
  });
  try {
    return await Promise.race([guarded, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
