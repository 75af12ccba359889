import type { Codec } from './stores.js';

/** UTF-8 JSON. Deterministic as long as values are built in a deterministic key order. */
export function jsonCodec<V>(name = 'json'): Codec<V> {
  return {
    name,
    encode: (value) => Buffer.from(JSON.stringify(value), 'utf8'),
    decode: (bytes) => JSON.parse(bytes.toString('utf8')) as V,
    encodeText: (value) => JSON.stringify(value),
  };
}

export const stringCodec: Codec<string> = {
  name: 'string',
  encode: (value) => Buffer.from(value, 'utf8'),
  decode: (bytes) => bytes.toString('utf8'),
};

/** IEEE-754 double, big-endian: for counters, prices and times. */
export const numberCodec: Codec<number> = {
  name: 'float64',
  encode: (value) => {
    const b = Buffer.allocUnsafe(8);
    b.writeDoubleBE(value, 0);
    return b;
  },
  decode: (bytes) => bytes.readDoubleBE(0),
};
