/**
 * One registry of error codes. Callers switch on `error.code`, never on `instanceof`.
 * `retriable` tells a runner whether trying the same operation again can succeed.
 */
export const ERRORS = {
  KAIROS_ERR_CONFIG: { retriable: false, doc: 'A configuration value is missing or invalid; the message names the field.' },
  KAIROS_ERR_TOPOLOGY: { retriable: false, doc: 'The topology is malformed (unknown parent, duplicate name, store not connected).' },
  KAIROS_ERR_STORE_NOT_CONNECTED: { retriable: false, doc: 'A processor asked for a store it was not connected to.' },
  KAIROS_ERR_STATE_IO: { retriable: true, doc: 'RocksDB could not open, read or write.' },
  KAIROS_ERR_STATE_CORRUPT: { retriable: false, doc: 'A stored value could not be decoded with its codec.' },
  KAIROS_ERR_STATE_CLOSED: { retriable: false, doc: 'A store was used after its task closed.' },
  KAIROS_ERR_DECODE: { retriable: false, doc: 'An input record is not valid JSON or does not match its topic schema.' },
  KAIROS_ERR_CHANGELOG: { retriable: true, doc: 'Writing or reading a changelog failed.' },
  KAIROS_ERR_USAGE: { retriable: false, doc: 'A command was called with wrong arguments.' },
  KAIROS_ERR_INPUT: { retriable: false, doc: 'An input file could not be read.' },
  KAIROS_ERR_OUTPUT: { retriable: false, doc: 'An output file could not be written.' },
  KAIROS_ERR_LISTEN: { retriable: false, doc: 'The HTTP server could not listen: the port is in use, or the host is not an address of this machine; the message names host, port and the setting.' },
  KAIROS_ERR_KAFKA: { retriable: true, doc: 'The Kafka cluster could not be reached or refused a request.' },
  KAIROS_ERR_COPARTITION: { retriable: false, doc: 'Input topics read by one task have different partition counts; the message names them.' },
  KAIROS_ERR_TOPICS_MISSING: { retriable: false, doc: 'Topics the runner needs do not exist and the broker refused to create them; the message names every one and how to create it.' },
  KAIROS_ERR_RECORD_TOO_LARGE: { retriable: false, doc: 'One record is larger than the broker\'s or topic\'s message size limit (message.max.bytes / max.message.bytes); the message names the topic and both sizes.' },
  KAIROS_ERR_SERDE: { retriable: false, doc: 'A value could not be encoded for its topic (it does not match the schema).' },
  KAIROS_ERR_REDIS: { retriable: true, doc: 'Redis could not be reached or is loading; dispatch pauses and retries.' },
  KAIROS_ERR_DISPATCH: { retriable: false, doc: 'A channel provider refused a message for good (bad address, bad credentials, bad payload).' },
  KAIROS_ERR_WAREHOUSE: { retriable: true, doc: 'The warehouse (BigQuery or the NDJSON directory) could not be reached or failed a request.' },
  KAIROS_ERR_WAREHOUSE_SCHEMA: { retriable: false, doc: 'A warehouse table differs from schemas/bigquery in a way BigQuery cannot migrate (type, mode or partitioning); the message names the column.' },
  KAIROS_ERR_API_BAD_REQUEST: { retriable: false, doc: 'An API request is malformed (bad id, bad query parameter); the message names the field.' },
  KAIROS_ERR_API_UNAUTHORIZED: { retriable: false, doc: 'An API request carries no credentials, an unknown API key or an invalid customer token.' },
  KAIROS_ERR_API_FORBIDDEN: { retriable: false, doc: 'The caller may not read this resource (a customer token for another customer).' },
  KAIROS_ERR_API_NOT_FOUND: { retriable: false, doc: 'The customer, product or route is unknown.' },
  KAIROS_ERR_API_REQUEST_TIMEOUT: { retriable: true, doc: 'An API request did not arrive completely in time (answered 408 before any route ran).' },
  KAIROS_ERR_API_URI_TOO_LONG: { retriable: false, doc: 'An API path parameter is longer than 512 characters (ids are 1–128); answered 414.' },
  KAIROS_ERR_API_HEADERS_TOO_LARGE: { retriable: false, doc: 'An API request\'s request line and headers exceed 16 KiB; answered 431.' },
  KAIROS_ERR_API_RATE_LIMITED: { retriable: true, doc: 'The caller exceeded its request rate; retry after the Retry-After seconds.' },
  KAIROS_ERR_INTERNAL: { retriable: true, doc: 'An unexpected failure inside Kairos (a bug); the API answers 500 and logs it with the request.' },
  KAIROS_ERR_API_UNAVAILABLE: { retriable: true, doc: 'The task owning the key is moving (rebalance, restore) or its owner is unreachable; retry after Retry-After.' },
} as const satisfies Record<string, { retriable: boolean; doc: string }>;

export type KairosErrorCode = keyof typeof ERRORS;

/**
 * Exit codes of the `kairos` command, in one place (README, Commands): 0 ok, 1 a failure at run time (an input
 * that cannot be read, a port in use, a broker or service that fails), 2 bad usage or configuration (the
 * argument or variable is named), 3 bad input lines (replay; each one reported).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, badLines: 3 } as const;

/** The exit code of a command that stopped with this error code. */
export function exitCodeOf(code: KairosErrorCode): number {
  return code === 'KAIROS_ERR_USAGE' || code === 'KAIROS_ERR_CONFIG' ? EXIT.usage : EXIT.failure;
}

export class KairosError extends Error {
  readonly code: KairosErrorCode;
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: KairosErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KairosError';
    this.code = code;
    this.retriable = ERRORS[code].retriable;
    this.details = options.details;
  }
}

export function isKairosError(e: unknown, code?: KairosErrorCode): e is KairosError {
  return e instanceof Error && 'code' in e && typeof e.code === 'string' && e.code.startsWith('KAIROS_ERR_') && (code === undefined || e.code === code);
}
