/**
 * Issue 15, item 4: no secret value in any message or log line. Bad and good secrets are fed through the
 * configuration checks, the start-up failure path and the loggers, and the output is searched for them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { describeFailure } from '../../src/cli/failure.js';
import { createLogger } from '../../src/util/logger.js';
import { redactSecrets, redactUrlCredentials, urlCredentials } from '../../src/util/redact.js';
import { runCli, STACK_TRACE, type CliResult } from '../support/cli.js';

function assertNoSecrets(r: CliResult, secrets: readonly string[], names: readonly string[]): void {
  const out = r.stdout + r.stderr;
  for (const s of secrets) assert.ok(!out.includes(s), `secret ${s} printed:\n${out}`);
  for (const n of names) assert.ok(out.includes(n), `${n} not named:\n${out}`);
  assert.doesNotMatch(out, STACK_TRACE);
}

test('kairos start: bad KAIROS_API_KEYS entries are named by position and name, never by their key', async () => {
  const cases: [string, string[]][] = [
    ['nokeyjustasecretvalue-A1b2C3d4', ['nokeyjustasecretvalue-A1b2C3d4', 'nokeyjustasecr']],
    ['svc:secretkey-B1b2C3d4e5f6:bogus', ['secretkey-B1b2C3d4e5f6']],
    ['svc:short-C1b2c3', ['short-C1b2c3']],
    ['a:secret-D1b2C3d4e5f6g7:read:extra', ['secret-D1b2C3d4e5f6g7']],
    ['svc:secret-E1b2C3d4e5f6g7:read,svc:secret-F1b2C3d4e5f6g7', ['secret-E1b2C3d4e5f6g7', 'secret-F1b2C3d4e5f6g7']],
  ];
  for (const [keys, secrets] of cases) {
    const r = await runCli(['start'], { KAFKA_BROKERS: '127.0.0.1:1', KAIROS_API_KEYS: keys });
    assert.equal(r.code, 2, r.stderr);
    assertNoSecrets(r, secrets, ['KAIROS_API_KEYS']);
  }
});

test('kairos start: a short token secret, a SASL password and URLs with passwords are never echoed', async () => {
  const secrets = ['short-G1b2C3', 'pw-H1b2C3d4', 'pw-I1b2C3d4', 'pw-J1b2C3d4'];
  const r = await runCli(['start'], {
    KAFKA_BROKERS: '127.0.0.1:1',
    KAIROS_API_TOKEN_SECRET: 'short-G1b2C3',
    KAIROS_REDIS_URL: 'redis://default:pw-H1b2C3d4@redis host:6379',
    SCHEMA_REGISTRY_URL: 'http://user:pw-I1b2C3d4@registry:8081 x',
    KAFKA_SASL_MECHANISM: 'bogus',
    KAFKA_SASL_USERNAME: 'kairos',
    KAFKA_SASL_PASSWORD: 'pw-J1b2C3d4',
  });
  assert.equal(r.code, 2, r.stderr);
  assertNoSecrets(r, secrets, ['KAIROS_API_TOKEN_SECRET', 'KAIROS_REDIS_URL', 'SCHEMA_REGISTRY_URL', 'KAFKA_SASL_MECHANISM']);
});

test('kairos dispatch and export: Redis, SMTP and endpoint URL passwords and a short webhook secret are never echoed', async () => {
  const d = await runCli(['dispatch'], {
    KAFKA_BROKERS: '127.0.0.1:1',
    REDIS_URL: 'redis://:pw-K1b2C3d4@bad host',
    SMTP_URL: 'smtp://mailer:pw-L1b2C3d4@mail host:587',
    KAIROS_WEBHOOK_URL: 'https://partner.example.com/hook',
    KAIROS_WEBHOOK_SECRET: 'short-M1b2C3',
  });
  assert.equal(d.code, 2, d.stderr);
  assertNoSecrets(d, ['pw-K1b2C3d4', 'pw-L1b2C3d4', 'short-M1b2C3'], ['REDIS_URL', 'SMTP_URL', 'KAIROS_WEBHOOK_SECRET']);
  const e = await runCli(['export'], { KAFKA_BROKERS: '127.0.0.1:1', KAIROS_WAREHOUSE: 'bigquery', BIGQUERY_PROJECT: 'my-project', BIGQUERY_API_ENDPOINT: 'http://u:pw-N1b2C3d4@bq host' });
  assert.equal(e.code, 2, e.stderr);
  assertNoSecrets(e, ['pw-N1b2C3d4'], ['BIGQUERY_API_ENDPOINT']);
});

test('kairos start failing after it connected to Redis (port in use, debug logs): the Redis password appears nowhere', async () => {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  try {
    const r = await runCli(['start'], {
      KAFKA_BROKERS: '127.0.0.1:1',
      KAIROS_LOG_LEVEL: 'debug',
      KAIROS_HTTP_HOST: '127.0.0.1',
      KAIROS_HTTP_PORT: String(addr.port),
      // Nothing listens on port 1: the client logs its connection errors.
      KAIROS_REDIS_URL: 'redis://default:pw-O1b2C3d4@127.0.0.1:1/0',
      KAIROS_API_TOKEN_SECRET: 'a-long-enough-token-secret-P1b2C3d4e5',
    });
    assert.equal(r.code, 1, r.stderr);
    assertNoSecrets(r, ['pw-O1b2C3d4', 'a-long-enough-token-secret-P1b2C3d4e5'], ['cannot listen']);
  } finally {
    server.close();
  }
});

test('the error path and the loggers redact URL credentials and configured secrets', () => {
  assert.equal(redactUrlCredentials('connect to redis://user:pa:ss@host:6379/0 failed'), 'connect to redis://***@host:6379/0 failed');
  assert.equal(redactUrlCredentials('see https://example.com/a@b'), 'see https://example.com/a@b');
  assert.deepEqual(urlCredentials('redis://u:p w@d@bad host'), ['p w@d']);
  assert.equal(redactSecrets('key=abcdefgh1234 and abcdefgh1234', ['abcdefgh1234']), 'key=*** and ***');

  const env = { KAIROS_API_TOKEN_SECRET: 'token-secret-Q1b2C3d4e5f6g7h8i9j0k1l2m3', KAIROS_REDIS_URL: 'redis://:pw-R1b2C3d4@host:6379' };
  const f = describeFailure(new Error(`boom with token-secret-Q1b2C3d4e5f6g7h8i9j0k1l2m3 and pw-R1b2C3d4`), 'start', env);
  assert.equal(f.exitCode, 1);
  assert.ok(!f.message.includes('token-secret-Q1') && !f.message.includes('pw-R1b2C3d4'), f.message);
  assert.match(f.message, /^kairos start: unexpected error: boom with \*\*\* and \*\*\*/);

  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination: sink, secrets: ['pw-S1b2C3d4'] });
  logger.warn({ err: new Error('Redis at redis://u:pw-T1b2C3d4@h:1 refused'), password: 'pw-U1b2C3d4', sasl: { password: 'pw-V1b2C3d4' } }, 'connecting to rediss://x:pw-W1b2C3d4@h with pw-S1b2C3d4');
  for (const s of ['pw-S1b2C3d4', 'pw-T1b2C3d4', 'pw-U1b2C3d4', 'pw-V1b2C3d4', 'pw-W1b2C3d4']) assert.ok(!out.includes(s), `${s} logged: ${out}`);
  assert.match(out, /refused/);
});

test('configured API keys are redacted from messages, their names are not', () => {
  const env = { KAIROS_API_KEYS: 'frontend:frontend-key-0123456789:read,crm-service:crm-key-0123456789abc:read+pii' };
  const f = describeFailure(new Error('key "frontend" and key "crm-service" failed with frontend-key-0123456789 / crm-key-0123456789abc'), 'start', env);
  assert.equal(f.message, 'kairos start: unexpected error: key "frontend" and key "crm-service" failed with *** / *** (a bug; KAIROS_DEBUG=1 prints the stack trace)');
});
