/** What every channel sender implements, and what a send attempt can end in. */
import type { Channel, CustomerProfile, PushTokenFeedback, Trigger } from '../../schemas/contract.js';
import type { RedisWrite } from './redis-guards.js';
import type { CatalogState } from './state-view.js';

export interface SendContext {
  readonly trigger: Trigger;
  readonly profile: CustomerProfile;
  /** Live catalog state of the trigger's sku, when the trigger has one. */
  readonly live: CatalogState | undefined;
  readonly deliveryId: string;
  /** 1 for the first provider call of this delivery. */
  readonly attempt: number;
  readonly now: number;
  /**
   * Recipients already served by earlier attempts of this delivery (push: tokens FCM accepted or rejected for
   * good), so a retry only goes to the rest.
   */
  readonly done: Set<string>;
}

export type SendOutcome =
  | { readonly status: 'sent'; readonly providerMessageId?: string; readonly detail?: string; readonly feedback?: readonly TokenFeedback[] }
  | { readonly status: 'skipped'; readonly reason: string; readonly detail?: string; readonly feedback?: readonly TokenFeedback[] }
  | {
      readonly status: 'failed';
      /** True: trying again cannot succeed (bad address, refused content, bad credentials). */
      readonly permanent: boolean;
      readonly reason: string;
      readonly detail: string;
      /** The provider asked to wait this long (Retry-After). */
      readonly retryInMs?: number;
      readonly feedback?: readonly TokenFeedback[];
    };

export type TokenFeedback = Pick<PushTokenFeedback, 'token' | 'reason'>;

export interface ChannelSender {
  readonly channel: Channel;
  /** Why this profile cannot be reached on the channel (no address), or undefined. */
  unreachable(profile: CustomerProfile): string | undefined;
  /** Provider sends the delivery costs against the channel's rate (push: one per token). */
  cost(profile: CustomerProfile): number;
  send(ctx: SendContext): Promise<SendOutcome>;
  /**
   * For a channel whose send is itself one write to the dispatchers' Redis (onsite): that write, which the
   * dispatcher then makes inside its admission script, with the SENT result stored in the same step (one
   * round trip per delivery instead of admit, send and finish). `providerMessageId` goes into the result.
   */
  redisWrite?(ctx: SendContext): RedisWrite & { readonly providerMessageId: string };
  close(): Promise<void>;
}

export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).slice(0, 900);
