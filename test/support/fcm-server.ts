/**
 * A local HTTPS endpoint that speaks the FCM HTTP v1 API (`POST /v1/projects/<p>/messages:send`), for the real
 * firebase-admin client: a self-signed certificate for fcm.googleapis.com is made with openssl at test time, and
 * the client connects here through KAIROS_FCM_CONNECT_TO with that certificate as its CA.
 * Tokens choose the answer: `unregistered-*` → 404 UNREGISTERED, `invalid-*` → 400 INVALID_ARGUMENT (bad
 * token), `flaky-*` → 503-free transient 500 INTERNAL on its first `flakyFailures` sends; anything else → 200.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';

export interface FcmRequest {
  readonly project: string;
  readonly authorization: string | undefined;
  readonly message: {
    token: string;
    data?: Record<string, string>;
    notification?: { title?: string; body?: string };
    android?: { ttl?: string; priority?: string; collapse_key?: string };
    apns?: { headers?: Record<string, string> };
    webpush?: { headers?: Record<string, string> };
  };
}

export interface LocalFcm {
  readonly address: string;
  readonly caFile: string;
  /** Every request received, in order (also the failed ones). */
  readonly requests: FcmRequest[];
  /** Messages answered with 200, per token. */
  readonly delivered: Map<string, FcmRequest[]>;
  stop(): Promise<void>;
}

export function makeCertificate(dir: string): { keyFile: string; certFile: string } {
  const keyFile = join(dir, 'fcm-key.pem');
  const certFile = join(dir, 'fcm-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=fcm.googleapis.com', '-addext', 'subjectAltName=DNS:fcm.googleapis.com'], {
    stdio: 'ignore',
  });
  return { keyFile, certFile };
}

const fcmError = (code: number, status: string, message: string, errorCode?: string): string =>
  JSON.stringify({
    error: { code, message, status, ...(errorCode ? { details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }] } : {}) },
  });

export async function startLocalFcm(dir: string, opts: { flakyFailures?: number } = {}): Promise<LocalFcm> {
  const { keyFile, certFile } = makeCertificate(dir);
  const requests: FcmRequest[] = [];
  const delivered = new Map<string, FcmRequest[]>();
  const flaky = new Map<string, number>();
  let seq = 0;
  const server: Server = createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? '');
      const reply = (status: number, body: string): void => {
        res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
        res.end(body);
      };
      if (req.method !== 'POST' || !m?.[1]) return reply(404, fcmError(404, 'NOT_FOUND', `no route ${req.method} ${req.url}`));
      let body: { message?: FcmRequest['message'] };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        return reply(400, fcmError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'));
      }
      if (!body.message?.token) return reply(400, fcmError(400, 'INVALID_ARGUMENT', 'Request contains an invalid argument.'));
      const r: FcmRequest = { project: m[1], authorization: req.headers.authorization, message: body.message };
      requests.push(r);
      const token = body.message.token;
      if (req.headers.authorization !== 'Bearer local-test-token') return reply(401, fcmError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.', 'THIRD_PARTY_AUTH_ERROR'));
      if (token.startsWith('unregistered-')) return reply(404, fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED'));
      if (token.startsWith('invalid-')) return reply(400, fcmError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT'));
      if (token.startsWith('flaky-')) {
        const n = flaky.get(token) ?? 0;
        flaky.set(token, n + 1);
        if (n < (opts.flakyFailures ?? 1)) return reply(500, fcmError(500, 'INTERNAL', 'Internal error encountered.', 'INTERNAL'));
      }
      const list = delivered.get(token) ?? [];
      list.push(r);
      delivered.set(token, list);
      return reply(200, JSON.stringify({ name: `projects/${m[1]}/messages/${++seq}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    address: `127.0.0.1:${port}`,
    caFile: certFile,
    requests,
    delivered,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The credential the dispatcher gets in tests: a fixed access token, no Google sign-in. */
export const localFcmCredential = {
  getAccessToken: () => Promise.resolve({ access_token: 'local-test-token', expires_in: 3600 }),
};
