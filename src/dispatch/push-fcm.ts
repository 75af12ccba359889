/**
 * Push through firebase-admin (FCM HTTP v1). One firebase app per sender, and one sender per process. Messages of
 * all concurrent deliveries are collected and sent with `sendEach` in batches of at most 500 (FCM's limit), without
 * a timed linger: a batch goes out at the end of the event-loop turn its messages were made in, or, while
 * `maxInFlight` sendEach calls are out, when one returns or 500 are waiting (under load the batches grow by
 * themselves, idle ones leave at once); each platform gets its own payload (android ttl/priority/collapse key, APNs expiration headers,
 * webpush TTL), and the TTL comes from the trigger's `expiresAt`. Tokens FCM reports as unregistered or invalid
 * are returned as feedback (crm.push-token-feedback.v1), so profiles drop them.
 *
 * `connectTo` points the real client at another host:port (a local FCM v1 endpoint in tests, or an egress proxy):
 * an https.Agent opens the TCP connection there while TLS still verifies the name fcm.googleapis.com (against
 * `ca`). firebase-admin's HTTP/2 transport takes no agent, so that mode uses its HTTP/1.1 transport.
 */
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { applicationDefault, cert, deleteApp, initializeApp, type App, type Credential } from 'firebase-admin/app';
import { getMessaging, type Message, type Messaging, type SendResponse } from 'firebase-admin/messaging';
import type { CustomerProfile } from '../../schemas/contract.js';
import { errorText, type ChannelSender, type SendContext, type SendOutcome, type TokenFeedback } from './channel.js';
import { render } from './templates.js';

export const FCM_HOST = 'fcm.googleapis.com';
export const FCM_MAX_BATCH = 500;

export interface FcmPushOptions {
  readonly projectId: string;
  /** Default: the service-account file `credentialsFile`, else application default credentials. */
  readonly credential?: Credential;
  readonly credentialsFile?: string;
  /** host:port to connect to instead of fcm.googleapis.com. */
  readonly connectTo?: string;
  /** Extra CA (PEM) to trust, with connectTo. */
  readonly ca?: string | Buffer;
  readonly shopUrl: string;
  /** @default 500 */
  readonly batchSize?: number;
  /** How long a message waits for others to fill its batch, ms; 0 = until the end of the event-loop turn. @default 0 */
  readonly lingerMs?: number;
  /** sendEach calls out at once; while this many are, messages wait for one to return (or for a full batch). @default 2 */
  readonly maxInFlight?: number;
}

class RedirectingAgent extends https.Agent {
  readonly #host: string;
  readonly #port: number;
  constructor(host: string, port: number, ca: string | Buffer | undefined) {
    super({ keepAlive: true, maxSockets: 64, ...(ca === undefined ? {} : { ca }) });
    this.#host = host;
    this.#port = port;
  }
  override createConnection(options: https.RequestOptions): Duplex {
    const { host: _h, port: _p, hostname: _n, ...rest } = options;
    return tls.connect({ ...(rest as tls.ConnectionOptions), ...(this.options.ca === undefined ? {} : { ca: this.options.ca }), host: this.#host, port: this.#port, servername: FCM_HOST });
  }
}

interface Pending {
  readonly message: Message;
  readonly resolve: (r: SendResponse) => void;
  readonly reject: (e: unknown) => void;
}

let appSeq = 0;

/** What FCM's answer for one token means for the token and the delivery. */
export function classifyFcmError(code: string, message: string): { token?: TokenFeedback['reason']; transient: boolean } {
  switch (code) {
    case 'messaging/registration-token-not-registered':
      return { token: 'unregistered', transient: false };
    case 'messaging/invalid-registration-token':
      return { token: 'invalid', transient: false };
    case 'messaging/invalid-argument':
      return /registration token/i.test(message) ? { token: 'invalid', transient: false } : { transient: false };
    case 'messaging/server-unavailable':
    case 'messaging/internal-error':
    case 'messaging/unknown-error':
    case 'messaging/message-rate-exceeded':
    case 'messaging/device-message-rate-exceeded':
    case 'app/network-error':
    case 'app/network-timeout':
      return { transient: true };
    default:
      return { transient: false };
  }
}

export class FcmPushSender implements ChannelSender {
  readonly channel = 'push' as const;
  readonly #app: App;
  readonly #messaging: Messaging;
  readonly #batchSize: number;
  readonly #lingerMs: number;
  readonly #shopUrl: string;
  readonly #agent: https.Agent | undefined;
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #maxInFlight: number;
  #inFlight = 0;
  #turnScheduled = false;
  /** sendEach calls made and messages in them, for tests and metrics. */
  readonly stats = { batches: 0, messages: 0 };

  constructor(opts: FcmPushOptions) {
    const credential = opts.credential ?? (opts.credentialsFile !== undefined ? cert(opts.credentialsFile) : applicationDefault());
    if (opts.connectTo !== undefined) {
      const i = opts.connectTo.lastIndexOf(':');
      this.#agent = new RedirectingAgent(opts.connectTo.slice(0, i), Number(opts.connectTo.slice(i + 1)), opts.ca);
    }
    this.#app = initializeApp(
      { credential, projectId: opts.projectId, ...(this.#agent === undefined ? {} : { httpAgent: this.#agent }) },
      `kairos-dispatch-${++appSeq}`,
    );
    this.#messaging = getMessaging(this.#app);
    if (this.#agent !== undefined) this.#messaging.enableLegacyHttpTransport();
    this.#batchSize = Math.min(opts.batchSize ?? FCM_MAX_BATCH, FCM_MAX_BATCH);
    this.#lingerMs = opts.lingerMs ?? 0;
    this.#maxInFlight = Math.max(1, opts.maxInFlight ?? 2);
    this.#shopUrl = opts.shopUrl;
  }

  unreachable(profile: CustomerProfile): string | undefined {
    return profile.pushTokens.length === 0 ? 'no push token' : undefined;
  }

  cost(profile: CustomerProfile): number {
    return Math.max(1, profile.pushTokens.length);
  }

  /** The FCM message for one token, shaped for its platform. */
  message(ctx: SendContext, token: { token: string; platform: 'android' | 'ios' | 'web' }): Message {
    const { trigger: t } = ctx;
    const r = render({ trigger: t, live: ctx.live, locale: ctx.profile.locale, shopUrl: this.#shopUrl });
    const ttlMs = Math.max(0, t.expiresAt - ctx.now);
    const data = { triggerId: t.triggerId, type: t.type, campaignId: t.campaignId, variant: t.variant, link: r.link };
    const notification = { title: r.subject, body: r.short };
    switch (token.platform) {
      case 'android':
        return { token: token.token, data, android: { ttl: ttlMs, priority: 'high', collapseKey: t.type, notification: { ...notification, clickAction: 'OPEN_LINK' } } };
      case 'ios':
        return {
          token: token.token,
          data,
          notification,
          apns: {
            headers: { 'apns-expiration': String(Math.floor(t.expiresAt / 1000)), 'apns-priority': '10', 'apns-collapse-id': t.type },
            payload: { aps: { sound: 'default', threadId: t.type } },
          },
        };
      default:
        return { token: token.token, data, webpush: { headers: { TTL: String(Math.floor(ttlMs / 1000)), Urgency: 'high' }, notification, fcmOptions: { link: r.link } } };
    }
  }

  async send(ctx: SendContext): Promise<SendOutcome> {
    const tokens = ctx.profile.pushTokens.filter((t) => !ctx.done.has(t.token));
    if (tokens.length === 0) return { status: 'skipped', reason: 'no-address', detail: 'no push token left' };
    const results = await Promise.all(tokens.map((t) => this.#enqueue(this.message(ctx, t)).then((r) => ({ token: t.token, r }))));
    const feedback: TokenFeedback[] = [];
    const sentIds: string[] = [];
    let transient: string | undefined;
    let permanent: string | undefined;
    for (const { token, r } of results) {
      if (r.success) {
        ctx.done.add(token);
        ctx.done.add(`sent:${token}`);
        sentIds.push(r.messageId ?? '');
        continue;
      }
      const code = r.error?.code ?? 'unknown';
      const c = classifyFcmError(code, r.error?.message ?? '');
      if (c.token !== undefined) feedback.push({ token, reason: c.token });
      if (c.transient) transient ??= `${code}: ${r.error?.message ?? ''}`;
      else {
        ctx.done.add(token);
        permanent ??= `${code}: ${r.error?.message ?? ''}`;
      }
    }
    if (transient !== undefined) {
      // Retry only the tokens that failed transiently; what was sent stays sent.
      return { status: 'failed', permanent: false, reason: 'transient-error', detail: transient.slice(0, 900), feedback };
    }
    const sentTotal = ctx.profile.pushTokens.filter((t) => ctx.done.has(`sent:${t.token}`)).length;
    if (sentTotal > 0) {
      return {
        status: 'sent',
        ...(sentIds[0] ? { providerMessageId: sentIds[0] } : {}),
        detail: `sent to ${sentTotal} of ${ctx.profile.pushTokens.length} tokens`,
        feedback,
      };
    }
    if (feedback.length === results.length) return { status: 'failed', permanent: true, reason: 'no-valid-token', detail: (permanent ?? '').slice(0, 900), feedback };
    return { status: 'failed', permanent: true, reason: 'permanent-error', detail: (permanent ?? 'rejected').slice(0, 900), feedback };
  }

  #enqueue(message: Message): Promise<SendResponse> {
    return new Promise<SendResponse>((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
      if (this.#queue.length >= this.#batchSize) this.#flush(false);
      else if (this.#lingerMs > 0) this.#timer ??= setTimeout(() => this.#flush(true), this.#lingerMs);
      else if (!this.#turnScheduled) {
        this.#turnScheduled = true;
        setImmediate(() => {
          this.#turnScheduled = false;
          this.#flush(false);
        });
      }
    });
  }

  /** Sends the full batches waiting, and the rest too when `all` or fewer than maxInFlight calls are out. */
  #flush(all: boolean): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#queue.length >= this.#batchSize || (this.#queue.length > 0 && (all || this.#inFlight < this.#maxInFlight))) {
      const batch = this.#queue.splice(0, this.#batchSize);
      this.stats.batches++;
      this.stats.messages += batch.length;
      this.#inFlight++;
      this.#messaging
        .sendEach(batch.map((p) => p.message))
        .finally(() => {
          this.#inFlight--;
          // What waited while the calls were out goes now, as one batch.
          if (this.#queue.length > 0) this.#flush(false);
        })
        .then(
        (res) =>
          batch.forEach((p, i) => {
            const r = res.responses[i];
            if (r) p.resolve(r);
            else p.reject(new Error('FCM returned fewer responses than messages'));
          }),
        (err: unknown) => {
          // The whole call failed (e.g. no access token, connection refused): every message failed transiently.
          const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : 'app/network-error';
          const error = Object.assign(new Error(errorText(err)), { code: code.includes('/') ? code : 'app/network-error' });
          batch.forEach((p) => p.resolve({ success: false, error: error as unknown as SendResponse['error'] }));
        },
      );
    }
  }

  async close(): Promise<void> {
    this.#flush(true);
    await deleteApp(this.#app);
    this.#agent?.destroy();
  }
}
