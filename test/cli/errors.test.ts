/**
 * Issue 15, item 3: what a user can get wrong ends with one line naming the problem and a documented exit code
 * (src/errors.ts EXIT: 1 failure at run time, 2 usage or configuration), never a Node stack trace.
 * Each case runs the real command in a child process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describeFailure } from '../../src/cli/failure.js';
import { mockClusterAvailable } from '../../src/kafka/mock-cluster.js';
import { tempDir } from '../helpers.js';
import { runCli, STACK_TRACE, type CliResult } from '../support/cli.js';

const scenario = join(import.meta.dirname, '..', '..', 'load-tests', 'scenarios', 'all-triggers.ndjson');

function assertClean(r: CliResult, code: number, pattern: RegExp): void {
  const out = r.stdout + r.stderr;
  assert.equal(r.code, code, out);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(out, STACK_TRACE, 'no stack trace');
}

/** A TCP server holding a port on 127.0.0.1. */
async function occupy(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { port: addr.port, server };
}

test('replay: a truncated .gz, a non-gzip file named .gz, a directory and a missing file are named, exit 1', async () => {
  const { dir, remove } = tempDir();
  try {
    const gz = gzipSync(readFileSync(scenario));
    writeFileSync(join(dir, 'truncated.ndjson.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
    writeFileSync(join(dir, 'plain.ndjson.gz'), readFileSync(scenario));
    mkdirSync(join(dir, 'events'));
    const cases: [string, RegExp][] = [
      ['truncated.ndjson.gz', /cannot read input truncated\.ndjson\.gz: the gzip data ends early \(truncated file\)/],
      ['plain.ndjson.gz', /cannot read input plain\.ndjson\.gz: not gzip data/],
      ['events', /cannot read input events: it is a directory/],
      ['missing.ndjson', /cannot read input missing\.ndjson: no such file/],
    ];
    for (const [input, pattern] of cases) {
      const r = await runCli(['replay', '--input', input, '--quiet'], {}, { cwd: dir });
      assertClean(r, 1, pattern);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    // Usage errors of the same command: exit 2.
    writeFileSync(join(dir, 'a-file'), '');
    assertClean(await runCli(['replay', '--input', scenario, '--state-dir', 'a-file', '--quiet'], {}, { cwd: dir }), 2, /--state-dir a-file is a file/);
    assertClean(await runCli(['replay', '--input', scenario, '--config', 'events'], {}, { cwd: dir }), 2, /cannot read campaign config events/);
  } finally {
    remove();
  }
});

test('a port in use stops kairos start and kairos export with one line naming host, port and the setting, exit 1', async () => {
  const { port, server } = await occupy();
  const { dir, remove } = tempDir();
  try {
    const env = { KAFKA_BROKERS: '127.0.0.1:1', KAIROS_HTTP_HOST: '127.0.0.1', KAIROS_HTTP_PORT: String(port), KAIROS_STATE_DIR: join(dir, 'state') };
    const start = await runCli(['start'], env);
    assertClean(start, 1, new RegExp(`kairos start: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use.*KAIROS_HTTP_PORT`));
    const exp = await runCli(['export'], { ...env, KAIROS_WAREHOUSE: `ndjson:${join(dir, 'wh')}` });
    assertClean(exp, 1, new RegExp(`kairos export: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
    const host = await runCli(['start'], { ...env, KAIROS_HTTP_HOST: '192.0.2.1', KAIROS_HTTP_PORT: '0' });
    assertClean(host, 1, /cannot listen on 192\.0\.2\.1:0: the host is not an address of this machine/);
  } finally {
    server.close();
    remove();
  }
});

test('a port in use stops kairos demo (and its mock broker) with one line, exit 1', { skip: !mockClusterAvailable() && 'kcat (mock cluster) not installed' }, async () => {
  const { port, server } = await occupy();
  try {
    const r = await runCli(['demo', '--port', String(port), '--duration', '30s']);
    assertClean(r, 1, new RegExp(`kairos demo: cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use.*--port`));
  } finally {
    server.close();
  }
});

test('a malformed KAIROS_REDIS_URL is a configuration error naming the variable (exit 2), not "Invalid URL"', async () => {
  const r = await runCli(['start'], { KAFKA_BROKERS: '127.0.0.1:1', KAIROS_REDIS_URL: 'redis://user:pw@redis host:6379' });
  assertClean(r, 2, /invalid configuration:\n {2}KAIROS_REDIS_URL=.*not a valid URL \(expected redis:\/\/host\[:port\]/);
  assert.doesNotMatch(r.stderr, /TypeError|Invalid URL/);
});

test('a CA file that is a directory and an unknown command are usage/config errors (exit 2)', async () => {
  const { dir, remove } = tempDir();
  try {
    assertClean(await runCli(['start'], { KAFKA_BROKERS: '127.0.0.1:1', KAFKA_SSL_CA_FILE: dir }), 2, /KAFKA_SSL_CA_FILE=.*no such file \(a PEM file is needed\)/);
    assertClean(await runCli(['frobnicate']), 2, /unknown command "frobnicate"/);
    assertClean(await runCli(['replay', '--bogus']), 2, /Unknown option '--bogus'/);
  } finally {
    remove();
  }
});

test('the error path: service failures name the service, unexpected errors are one line without a stack', () => {
  const kafka = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { name: 'KafkaJSNumberOfRetriesExceeded' });
  assert.deepEqual(describeFailure(kafka, 'start', {}), { message: 'kairos start: Kafka (KAFKA_BROKERS): Connection error: connect ECONNREFUSED 127.0.0.1:1', exitCode: 1 });
  const sys = Object.assign(new Error('listen EACCES'), { code: 'EACCES', syscall: 'open', path: '/etc/x' });
  assert.deepEqual(describeFailure(sys, 'replay', {}), { message: 'kairos replay: open /etc/x: permission denied (EACCES)', exitCode: 1 });
  const bug = describeFailure(new TypeError('x is not a function'), 'demo', {});
  assert.equal(bug.exitCode, 1);
  assert.equal(bug.message, 'kairos demo: unexpected error: x is not a function (a bug; KAIROS_DEBUG=1 prints the stack trace)');
  assert.match(describeFailure(new TypeError('x is not a function'), 'demo', { KAIROS_DEBUG: '1' }).message, /\n {4}at /);
});
