/**
 * Campaign config that changes without a restart. Topologies and guards get settings objects whose fields
 * are getters over the current config, and read them at every decision, so an applied change takes effect
 * with the next record or timer. A rejected config (validation errors, each naming its field) leaves the
 * current one in force. What is fixed when the topology is built and needs a restart: which topologies exist
 * (a disabled topology stops emitting but keeps its state) and store TTLs.
 */
import { watchFile, unwatchFile, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { CampaignSettings } from '../../topologies/common/campaign.js';
import type { CampaignGuards, GuardSettings } from '../../topologies/common/guards.js';
import { isKairosError } from '../errors.js';
import { resolveCampaigns, type CampaignsConfig } from './campaigns.js';

type TopologyKey = 'basketAbandonment' | 'browseAbandonment' | 'basketPriceDrop' | 'wishlistRestock';
type ParamsOf<K extends TopologyKey> = NonNullable<CampaignsConfig[K]>['params'];

export interface ApplyResult {
  readonly ok: boolean;
  readonly errors: readonly string[];
}

/** Who published a config and when, as the campaign topic's record headers say (`kairos-published-by`/`-at`). */
export interface Publication {
  readonly by: string;
  /** ISO 8601, as the header carries it. */
  readonly at: string;
}

export class LiveCampaigns {
  #current: CampaignsConfig;
  #version = 1;
  #input: unknown;
  #source: string;
  #publication: Publication | undefined;
  readonly #listeners: ((c: CampaignsConfig, version: number) => void)[] = [];

  /** `input`: the JSON `initial` was resolved from, when known (the console shows and edits it). */
  constructor(initial: CampaignsConfig, input?: unknown, source = 'start') {
    this.#current = initial;
    this.#input = input;
    this.#source = source;
  }

  /** The JSON the config in force was resolved from (undefined when it was given resolved). */
  get input(): unknown {
    return this.#input;
  }

  /** Where the config in force came from: 'start', a file path, or topic[partition]@offset. */
  get source(): string {
    return this.#source;
  }

  /** Who published the config in force and when (a topic record with the console's headers); undefined otherwise. */
  get publication(): Publication | undefined {
    return this.#publication;
  }

  get current(): CampaignsConfig {
    return this.#current;
  }

  get version(): number {
    return this.#version;
  }

  onChange(fn: (c: CampaignsConfig, version: number) => void): void {
    this.#listeners.push(fn);
  }

  /** Validates `input` and makes it current; on errors keeps the current config and returns them. */
  apply(input: unknown, source: string, publication?: Publication): ApplyResult {
    let next: CampaignsConfig;
    try {
      next = resolveCampaigns(input, source);
    } catch (err) {
      if (!isKairosError(err, 'KAIROS_ERR_CONFIG')) throw err;
      const details = err.details as { errors?: string[] } | undefined;
      return { ok: false, errors: details?.errors ?? [err.message] };
    }
    this.#current = next;
    this.#input = input;
    this.#source = source;
    this.#publication = publication;
    this.#version++;
    for (const fn of this.#listeners) fn(next, this.#version);
    return { ok: true, errors: [] };
  }

  /** Settings of one topology that always read the current config (enabled = emits). */
  settings<K extends TopologyKey>(key: K, output?: string, guarded = false): CampaignSettings<ParamsOf<K>> & { readonly enabled: boolean } {
    const live = (): NonNullable<CampaignsConfig[K]> => this.#current[key] as NonNullable<CampaignsConfig[K]>;
    return {
      ...(output === undefined ? {} : { output }),
      guarded,
      get enabled() {
        return live().enabled;
      },
      get campaignId() {
        return live().campaignId;
      },
      get channels() {
        return live().channels;
      },
      get expiresAfterMs() {
        return live().expiresAfterMs;
      },
      get params() {
        return live().params as ParamsOf<K>;
      },
    };
  }

  /** Guard settings over the current config; undefined when the guards are off at build time. */
  guards(): GuardSettings | undefined {
    if (!this.#current.guards) return undefined;
    const current = (): CampaignsConfig => this.#current;
    const g = () => current().guards ?? { quietHours: null, defaultTimezone: 'UTC', cap: null, priority: [] };
    return {
      get quietHours() {
        return g().quietHours;
      },
      get defaultTimezone() {
        return g().defaultTimezone;
      },
      get cap() {
        return g().cap;
      },
      get priority() {
        return g().priority;
      },
      get campaigns() {
        const c = current();
        return new Map<string, CampaignGuards>(
          [c.basketAbandonment, c.browseAbandonment, c.basketPriceDrop, c.wishlistRestock].flatMap((x) => (x ? [[x.campaignId, { ...x.guards, enabled: x.enabled }] as const] : [])),
        );
      },
    };
  }
}

/**
 * Re-reads a campaign file when it changes (polling its mtime, which also works on network and container
 * mounts) and applies it; a bad file is logged with every error and the old config stays.
 */
export function watchCampaignsFile(live: LiveCampaigns, path: string, logger: Logger, onResult?: (r: ApplyResult) => void, intervalMs = 2000): () => void {
  const listener = (): void => {
    let result: ApplyResult;
    try {
      result = live.apply(JSON.parse(readFileSync(path, 'utf8')), path);
    } catch (err) {
      result = { ok: false, errors: [`${path}: ${(err as Error).message}`] };
    }
    if (result.ok) logger.info({ path, version: live.version }, 'campaign config reloaded');
    else logger.error({ path, errors: result.errors }, 'campaign config rejected; the previous one stays in force');
    onResult?.(result);
  };
  watchFile(path, { interval: intervalMs }, (curr, prev) => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size) listener();
  });
  return () => unwatchFile(path);
}
