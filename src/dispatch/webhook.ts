/**
 * The partner webhook channel: one signed HTTPS POST per delivery. The body is JSON `{deliveryId, trigger,
 * customer: {customerId, locale, timezone}}`; headers `kairos-delivery-id` (also `idempotency-key`, so a partner
 * can drop repeats) and `kairos-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 * 2xx = sent; 408, 425, 429 and 5xx or a network error = transient (Retry-After honoured); other 4xx = permanent.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { CustomerProfile } from '../../schemas/contract.js';
import { errorText, type ChannelSender, type SendContext, type SendOutcome } from './channel.js';

export interface WebhookOptions {
  readonly url: string;
  readonly secret: string;
  /** @default 5000 */
  readonly timeoutMs?: number;
}

export function signWebhook(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/** For partners (and tests): whether `header` signs `body` with `secret`, within `toleranceS` of `nowS`. */
export function verifyWebhookSignature(secret: string, header: string, body: string, nowS: number, toleranceS = 300): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m?.[1] || !m[2]) return false;
  const t = Number(m[1]);
  if (Math.abs(nowS - t) > toleranceS) return false;
  const want = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  const got = Buffer.from(m[2]);
  return want.length === got.length && timingSafeEqual(want, got);
}

function retryAfterMs(h: string | null): number | undefined {
  if (h === null) return undefined;
  const s = Number(h);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const d = Date.parse(h);
  return Number.isNaN(d) ? undefined : Math.max(0, d - Date.now());
}

export class WebhookSender implements ChannelSender {
  readonly channel = 'webhook' as const;
  readonly #o: WebhookOptions;

  constructor(opts: WebhookOptions) {
    this.#o = opts;
  }

  unreachable(_profile: CustomerProfile): string | undefined {
    return undefined;
  }

  cost(): number {
    return 1;
  }

  async send(ctx: SendContext): Promise<SendOutcome> {
    const p = ctx.profile;
    const body = JSON.stringify({
      deliveryId: ctx.deliveryId,
      trigger: ctx.trigger,
      customer: { customerId: p.customerId, ...(p.locale ? { locale: p.locale } : {}), ...(p.timezone ? { timezone: p.timezone } : {}) },
    });
    let res: Response;
    try {
      res = await fetch(this.#o.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'kairos-delivery-id': ctx.deliveryId,
          'idempotency-key': ctx.deliveryId,
          'kairos-attempt': String(ctx.attempt),
          'kairos-signature': signWebhook(this.#o.secret, body, Math.floor(ctx.now / 1000)),
        },
        body,
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000),
      });
      await res.arrayBuffer().catch(() => undefined);
    } catch (err) {
      return { status: 'failed', permanent: false, reason: 'transient-error', detail: errorText(err) };
    }
    if (res.ok) return { status: 'sent', ...(res.headers.get('x-request-id') ? { providerMessageId: res.headers.get('x-request-id') as string } : {}), detail: `HTTP ${res.status}` };
    const transient = res.status === 408 || res.status === 425 || res.status === 429 || res.status >= 500;
    const wait = retryAfterMs(res.headers.get('retry-after'));
    return {
      status: 'failed',
      permanent: !transient,
      reason: transient ? 'transient-error' : 'permanent-error',
      detail: `HTTP ${res.status}`,
      ...(wait === undefined ? {} : { retryInMs: wait }),
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
