/** The kafkajs client, with its log lines routed into pino and its produce requests encoded in one pass (produce-encoding.ts). */
// Before kafkajs: it replaces a kafkajs module that kafkajs takes when it loads.
import { kafkajsPreload } from './kafkajs-preload.js';
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import type { Logger } from 'pino';
import { installProduceEncoding } from './produce-encoding.js';

/** TLS and SASL towards the brokers (managed Kafka: Confluent Cloud, MSK, Aiven, …). */
export interface KafkaSecurity {
  readonly ssl: boolean;
  /** PEM file with the CA that signed the brokers' certificates; the system CAs when unset. */
  readonly caFile?: string;
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string };
}

export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly logger: Logger;
  /** @default 30000 */
  readonly requestTimeout?: number;
  readonly security?: KafkaSecurity;
}

export function createKafka(opts: KafkaClientOptions): Kafka {
  const log = opts.logger.child({ component: 'kafkajs' });
  const encoding = installProduceEncoding();
  if (encoding !== 'installed') log.info({ encoding }, 'produce requests: kafkajs encoder');
  const grouping = kafkajsPreload();
  if (grouping !== 'installed') log.info({ grouping }, 'produce requests: kafkajs grouping per partition');
  const sec = opts.security;
  const ssl = sec?.ssl === true ? (sec.caFile === undefined ? true : { ca: [readFileSync(sec.caFile, 'utf8')] }) : false;
  const sasl: SASLOptions | undefined = sec?.sasl ? { mechanism: sec.sasl.mechanism, username: sec.sasl.username, password: sec.sasl.password } as SASLOptions : undefined;
  return new Kafka({
    clientId: opts.clientId,
    brokers: [...opts.brokers],
    ssl,
    ...(sasl === undefined ? {} : { sasl }),
    requestTimeout: opts.requestTimeout ?? 30_000,
    retry: { retries: 8, initialRetryTime: 200 },
    logLevel: logLevel.INFO,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, timestamp: _ts, logger: _l, ...rest } = entry;
        const fields = { ...rest, namespace: entry.logger };
        if (level === logLevel.ERROR) log.error(fields, message);
        else if (level === logLevel.WARN) log.warn(fields, message);
        else if (level === logLevel.INFO) log.debug(fields, message);
        else log.trace(fields, message);
      },
  });
}
