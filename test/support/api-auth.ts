/** The query API tests' credentials: a read key, a key that may also read PII, and the customer-token secret. */
import type { AuthConfig } from '../../src/api/auth.js';

export const SECRET = 'a-test-secret-of-at-least-32-characters!';
export const READ_KEY = 'read-key-0123456789';
export const PII_KEY = 'pii-key-0123456789ab';

/** Authentication required: `frontend` (READ_KEY, read) and `crm` (PII_KEY, read + pii); tokens signed with SECRET. */
export function testAuth(): AuthConfig {
  return { mode: 'required', keys: [{ name: 'frontend', key: READ_KEY, scopes: new Set(['read']) }, { name: 'crm', key: PII_KEY, scopes: new Set(['read', 'pii']) }], tokenSecret: SECRET };
}
