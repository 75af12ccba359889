/** The query API tests' fixtures: credentials (a read key, a key that may also read PII, the customer-token secret) and a customer profile. */
import type { CustomerProfile } from '../../schemas/contract.js';
import type { AuthConfig } from '../../src/api/auth.js';

export const SECRET = 'a-test-secret-of-at-least-32-characters!';
export const READ_KEY = 'read-key-0123456789';
export const PII_KEY = 'pii-key-0123456789ab';

/** Authentication required: `frontend` (READ_KEY, read) and `crm` (PII_KEY, read + pii); tokens signed with SECRET. */
export function testAuth(): AuthConfig {
  return { mode: 'required', keys: [{ name: 'frontend', key: READ_KEY, scopes: new Set(['read']) }, { name: 'crm', key: PII_KEY, scopes: new Set(['read', 'pii']) }], tokenSecret: SECRET };
}

/** A customer who consented to every channel (Berlin, VIP), as the query API tests' customers are. */
export function testProfile(id: string, updatedAt: number): CustomerProfile {
  return {
    customerId: id,
    updatedAt,
    timezone: 'Europe/Berlin',
    consents: { push: true, email: true, onsite: true },
    pushTokens: [{ token: `fcm-${id}`, platform: 'android' }],
    email: `${id}@example.com`,
    segments: ['vip'],
    attributes: { clv: 900 },
  };
}
