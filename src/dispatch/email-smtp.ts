/**
 * Email over SMTP (nodemailer, pooled connections). The text comes from templates.ts in the customer's language,
 * with the live price and stock. A 4xx SMTP reply or a connection problem is transient; a 5xx reply is permanent.
 * The Message-ID is derived from the delivery id, so a message repeated after a lost reply can be recognised.
 */
import nodemailer, { type Transporter } from 'nodemailer';
import type { CustomerProfile } from '../../schemas/contract.js';
import { errorText, type ChannelSender, type SendContext, type SendOutcome } from './channel.js';
import { render } from './templates.js';

export interface SmtpEmailOptions {
  readonly url: string;
  readonly from: string;
  readonly shopUrl: string;
  /** @default 5 */
  readonly maxConnections?: number;
}

/** A 5xx reply or a refused envelope is permanent; 4xx replies and connection problems are transient. */
export function classifySmtpError(err: unknown): { permanent: boolean; reason: string } {
  const e = err as { responseCode?: unknown; code?: unknown };
  const permanent = typeof e.responseCode === 'number' ? e.responseCode >= 500 : e.code === 'EENVELOPE';
  return { permanent, reason: permanent ? 'permanent-error' : 'transient-error' };
}

/** nodemailer SMTP options from an smtp:// or smtps:// URL (user and password in it, if any). */
export function smtpOptions(url: string, maxConnections: number): Record<string, unknown> {
  const u = new URL(url);
  const secure = u.protocol === 'smtps:';
  return {
    host: u.hostname,
    port: u.port === '' ? (secure ? 465 : 587) : Number(u.port),
    secure,
    ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
    pool: true,
    maxConnections,
  };
}

export class SmtpEmailSender implements ChannelSender {
  readonly channel = 'email' as const;
  readonly #transport: Transporter;
  readonly #from: string;
  readonly #shopUrl: string;

  constructor(opts: SmtpEmailOptions) {
    this.#transport = nodemailer.createTransport(smtpOptions(opts.url, opts.maxConnections ?? 5));
    this.#from = opts.from;
    this.#shopUrl = opts.shopUrl;
  }

  unreachable(profile: CustomerProfile): string | undefined {
    return profile.email === undefined ? 'no email address' : undefined;
  }

  cost(): number {
    return 1;
  }

  async send(ctx: SendContext): Promise<SendOutcome> {
    const r = render({ trigger: ctx.trigger, live: ctx.live, locale: ctx.profile.locale, shopUrl: this.#shopUrl });
    try {
      const info = (await this.#transport.sendMail({
        from: this.#from,
        to: ctx.profile.email as string,
        subject: r.subject,
        text: r.text,
        html: r.html,
        messageId: `<${ctx.deliveryId}@kairos.dispatch>`,
        headers: { 'X-Kairos-Trigger-Id': ctx.trigger.triggerId, 'X-Kairos-Delivery-Id': ctx.deliveryId, 'Content-Language': r.language },
      })) as { messageId?: string; response?: string };
      return { status: 'sent', ...(info.messageId ? { providerMessageId: info.messageId } : {}), detail: `${r.language}: ${(info.response ?? '').slice(0, 200)}` };
    } catch (err) {
      const c = classifySmtpError(err);
      return { status: 'failed', permanent: c.permanent, reason: c.reason, detail: errorText(err) };
    }
  }

  close(): Promise<void> {
    this.#transport.close();
    return Promise.resolve();
  }
}
