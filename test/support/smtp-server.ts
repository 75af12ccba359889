/**
 * A local SMTP server (the smtp-server library) that keeps every message it accepted. Recipients choose the
 * answer: `bounce*@…` → 550 (permanent), `busy*@…` → 451 (transient) for the first `busyFailures` tries.
 */
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  readonly to: string[];
  readonly raw: string;
  readonly headers: Map<string, string>;
}

export interface LocalSmtp {
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedMail[];
  /** Messages accepted per X-Kairos-Delivery-Id. */
  byDelivery(): Map<string, number>;
  stop(): Promise<void>;
}

function headersOf(raw: string): Map<string, string> {
  const head = raw.split(/\r?\n\r?\n/)[0] ?? '';
  const unfolded = head.replace(/\r?\n[ \t]+/g, ' ');
  const out = new Map<string, string>();
  for (const line of unfolded.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return out;
}

export async function startLocalSmtp(opts: { busyFailures?: number } = {}): Promise<LocalSmtp> {
  const received: ReceivedMail[] = [];
  const busy = new Map<string, number>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      const a = address.address;
      if (a.startsWith('bounce')) return callback(Object.assign(new Error('5.1.1 mailbox unavailable'), { responseCode: 550 }));
      if (a.startsWith('busy')) {
        const n = busy.get(a) ?? 0;
        busy.set(a, n + 1);
        if (n < (opts.busyFailures ?? 1)) return callback(Object.assign(new Error('4.2.1 try again later'), { responseCode: 451 }));
      }
      return callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), raw, headers: headersOf(raw) });
        callback(null);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    received,
    byDelivery() {
      const m = new Map<string, number>();
      for (const r of received) {
        const id = r.headers.get('x-kairos-delivery-id') ?? '?';
        m.set(id, (m.get(id) ?? 0) + 1);
      }
      return m;
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
