/**
 * Campaign config: which trigger topologies run, with which parameters, channels, experiment and audience,
 * and the guards every trigger passes. Validated as a whole (every bad field reported at once, by path),
 * defaults filled in, then frozen.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { KairosError } from '../errors.js';
import { Duration, toMs } from './duration.js';
import { schemaErrors } from './schema-errors.js';
import type { CampaignSettings } from '../../topologies/common/campaign.js';
import { DEFAULT_PRIORITY, localMinutes, type CampaignGuards, type GuardSettings } from '../../topologies/common/guards.js';
import type { BasketAbandonmentParams } from '../../topologies/basket-abandonment/index.js';
import { defaults as basketAbandonmentDefaults } from '../../topologies/basket-abandonment/index.js';
import type { TriggerType } from '../../schemas/contract.js';
import {
  BasketPriceDropParamsSchema,
  checkBasketPriceDropParams,
  resolveBasketPriceDropParams,
  type BasketPriceDropParams,
} from '../../topologies/basket-price-drop/index.js';
import { WishlistRestockParamsSchema, wishlistRestockParams, type WishlistRestockParams } from '../../topologies/wishlist-restock/index.js';
import { DEFAULT_DEDUP_WINDOW_MS } from '../../topologies/common/dedup.js';
import { BrowseAbandonmentParamsSchema, defaults as browseDefaults, type BrowseAbandonmentParams } from '../../topologies/browse-abandonment/index.js';

const ChannelName = Type.Union([Type.Literal('push'), Type.Literal('email'), Type.Literal('onsite'), Type.Literal('webhook')]);
const TriggerTypeName = Type.Union(DEFAULT_PRIORITY.map((t) => Type.Literal(t)));
const TimeOfDay = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM, 24 h' });

const Experiment = Type.Object(
  {
    holdout: Type.Number({ minimum: 0, maximum: 0.99, description: 'share of customers held out: audited, never sent' }),
    variants: Type.Array(Type.Object({ name: Type.String({ minLength: 1, maxLength: 64, pattern: '^(?!holdout$)' }), weight: Type.Number({ exclusiveMinimum: 0 }) }, { additionalProperties: false }), {
      minItems: 1,
    }),
  },
  { additionalProperties: false },
);

const Audience = Type.Object(
  {
    segmentsAny: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    segmentsNone: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    attributes: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1 }),
            op: Type.Union([Type.Literal('>'), Type.Literal('>='), Type.Literal('<'), Type.Literal('<='), Type.Literal('=='), Type.Literal('!=')]),
            value: Type.Union([Type.Number(), Type.String(), Type.Boolean()]),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false, description: 'e.g. CLV > 500 and churnRisk > 0.7, not in segment X' },
);

function campaign<P extends TSchema>(params: P) {
  return Type.Object(
    {
      enabled: Type.Optional(Type.Boolean({ default: true })),
      campaignId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'id reported on triggers; defaults to the topology name' })),
      channels: Type.Optional(Type.Array(ChannelName, { minItems: 1, uniqueItems: true })),
      expiresAfter: Type.Optional(Duration),
      experiment: Type.Optional(Experiment),
      audience: Type.Optional(Audience),
      params: Type.Optional(params),
    },
    { additionalProperties: false },
  );
}

export const BasketAbandonmentParamsSchema = Type.Object(
  {
    inactivityGap: Type.Optional(Duration),
    reentryCooldown: Type.Optional(Duration),
    stateTtl: Type.Optional(Duration),
  },
  { additionalProperties: false },
);

const Guards = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'run every trigger through the guards (default true)' })),
    quietHours: Type.Optional(Type.Union([Type.Object({ start: TimeOfDay, end: TimeOfDay }, { additionalProperties: false }), Type.Null()])),
    defaultTimezone: Type.Optional(Type.String({ minLength: 1, description: 'IANA zone for customers without one' })),
    cap: Type.Optional(Type.Union([Type.Object({ max: Type.Integer({ minimum: 1 }), window: Duration }, { additionalProperties: false }), Type.Null()])),
    priority: Type.Optional(Type.Array(TriggerTypeName, { uniqueItems: true, minItems: 1 })),
  },
  { additionalProperties: false },
);

export const CampaignsConfigSchema = Type.Object(
  {
    defaults: Type.Optional(
      Type.Object({ channels: Type.Optional(Type.Array(ChannelName, { minItems: 1, uniqueItems: true })), expiresAfter: Type.Optional(Duration) }, { additionalProperties: false }),
    ),
    guards: Type.Optional(Guards),
    input: Type.Optional(
      Type.Object(
        {
          // How long (stream time) a (record key, eventId) is remembered: a redelivery within it is dropped.
          // 0 turns deduplication off. Fixed at start (a store TTL).
          dedupWindow: Type.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    campaigns: Type.Optional(
      Type.Object(
        {
          'basket-abandonment': Type.Optional(campaign(BasketAbandonmentParamsSchema)),
          'browse-abandonment': Type.Optional(campaign(BrowseAbandonmentParamsSchema)),
          'basket-price-drop': Type.Optional(campaign(BasketPriceDropParamsSchema)),
          'wishlist-restock': Type.Optional(campaign(WishlistRestockParamsSchema)),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type CampaignsConfigInput = Static<typeof CampaignsConfigSchema>;

type Enabled<P> = CampaignSettings<P> & { readonly enabled: boolean; readonly guards: CampaignGuards };

/** The resolved config: every topology's settings with durations in ms, and the guards. */
export interface CampaignsConfig {
  readonly basketAbandonment: Enabled<BasketAbandonmentParams> | undefined;
  readonly browseAbandonment: Enabled<BrowseAbandonmentParams> | undefined;
  readonly basketPriceDrop: Enabled<BasketPriceDropParams> | undefined;
  readonly wishlistRestock: Enabled<WishlistRestockParams> | undefined;
  /** undefined: guards off (every candidate trigger is sent). */
  readonly guards: Omit<GuardSettings, 'campaigns'> | undefined;
  /** Input deduplication (topologies/common/dedup.ts); fixed when the topology is built. */
  readonly input: { readonly dedupWindowMs: number };
}

function fail(source: string, errors: string[]): never {
  throw new KairosError('KAIROS_ERR_CONFIG', `invalid campaign config (${source}):\n  ${errors.join('\n  ')}`, { details: { errors } });
}

const minutesOf = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The rules a schema cannot state, checked on whatever parts of `input` are well-formed, so that they are
 * reported together with the schema errors (a bad time zone is not hidden behind a bad cap).
 */
function semanticErrors(input: unknown): string[] {
  const at = (...keys: string[]): unknown => keys.reduce<unknown>((v, k) => (isObject(v) ? v[k] : undefined), input);
  const errors: string[] = [];
  for (const [topology, param] of [['basket-abandonment', 'inactivityGap'], ['browse-abandonment', 'sessionGap']] as const) {
    const gap = at('campaigns', topology, 'params', param);
    if (Value.Check(Duration, gap) && toMs(gap) <= 0) errors.push(`/campaigns/${topology}/params/${param}: must be greater than 0`);
  }
  const pd = at('campaigns', 'basket-price-drop', 'params');
  if (pd === undefined || Value.Check(BasketPriceDropParamsSchema, pd)) {
    for (const e of checkBasketPriceDropParams(resolveBasketPriceDropParams(pd ?? {}))) errors.push(`/campaigns/basket-price-drop/params/${e}`);
  }
  const tz = at('guards', 'defaultTimezone');
  if (typeof tz === 'string' && tz !== '' && localMinutes(0, tz) === undefined) {
    errors.push(`/guards/defaultTimezone: unknown time zone ${JSON.stringify(tz)} (expected an IANA zone, e.g. Europe/Berlin)`);
  }
  const quiet = at('guards', 'quietHours');
  if (isObject(quiet) && typeof quiet.start === 'string' && quiet.start === quiet.end) errors.push('/guards/quietHours: start and end must differ');
  const priority = at('guards', 'priority');
  if (Array.isArray(priority)) {
    const missing = DEFAULT_PRIORITY.filter((t) => !priority.includes(t));
    if (missing.length > 0) errors.push(`/guards/priority: must rank every trigger type; missing ${missing.join(', ')}`);
  }
  return errors;
}

/**
 * Validates and resolves a campaign config object. Throws KAIROS_ERR_CONFIG naming every bad field at once
 * (schema and semantic errors together), each with what the field accepts.
 */
export function resolveCampaigns(input: unknown, source = 'inline'): CampaignsConfig {
  const problems = [...schemaErrors(CampaignsConfigSchema, input), ...semanticErrors(input)];
  if (problems.length > 0 || !Value.Check(CampaignsConfigSchema, input)) fail(source, problems);
  const cfg = input;
  const defChannels = cfg.defaults?.channels ?? ['push', 'email'];
  const defExpires = toMs(cfg.defaults?.expiresAfter ?? '24h');

  const settings = <P>(
    name: string,
    c: { enabled?: boolean; campaignId?: string; channels?: ('push' | 'email' | 'onsite' | 'webhook')[]; expiresAfter?: number | string; experiment?: Static<typeof Experiment>; audience?: Static<typeof Audience> } | undefined,
    params: P,
  ): Enabled<P> => {
    const x = c ?? {};
    return Object.freeze({
      enabled: x.enabled ?? true,
      campaignId: x.campaignId ?? name,
      channels: Object.freeze([...(x.channels ?? defChannels)]),
      expiresAfterMs: x.expiresAfter === undefined ? defExpires : toMs(x.expiresAfter),
      params: Object.freeze(params),
      guards: Object.freeze({ ...(x.experiment ? { experiment: x.experiment } : {}), ...(x.audience ? { filter: x.audience } : {}) }),
    });
  };

  const ba = cfg.campaigns?.['basket-abandonment'];
  const bap = ba?.params ?? {};
  const baParams: BasketAbandonmentParams = {
    inactivityGap: bap.inactivityGap === undefined ? basketAbandonmentDefaults.inactivityGap : toMs(bap.inactivityGap),
    reentryCooldown: bap.reentryCooldown === undefined ? basketAbandonmentDefaults.reentryCooldown : toMs(bap.reentryCooldown),
    stateTtl: bap.stateTtl === undefined ? basketAbandonmentDefaults.stateTtl : toMs(bap.stateTtl),
  };

  const bra = cfg.campaigns?.['browse-abandonment'];
  const brp = bra?.params ?? {};
  const browseParams: BrowseAbandonmentParams = {
    sessionGap: brp.sessionGap === undefined ? browseDefaults.sessionGap : toMs(brp.sessionGap),
    minDistinctProducts: brp.minDistinctProducts ?? browseDefaults.minDistinctProducts,
    reentryCooldown: brp.reentryCooldown === undefined ? browseDefaults.reentryCooldown : toMs(brp.reentryCooldown),
    stateTtl: brp.stateTtl === undefined ? browseDefaults.stateTtl : toMs(brp.stateTtl),
  };

  const pd = cfg.campaigns?.['basket-price-drop'];
  const pdParams = resolveBasketPriceDropParams(pd?.params ?? {});

  const wr = cfg.campaigns?.['wishlist-restock'];
  const wrParams = wishlistRestockParams(wr?.params ?? {});

  const g = cfg.guards ?? {};
  const defaultTimezone = g.defaultTimezone ?? 'Europe/Berlin';
  const quiet = g.quietHours === undefined ? { start: '22:00', end: '08:00' } : g.quietHours;
  const cap = g.cap === undefined ? { max: 3, window: '24h' } : g.cap;
  const priority = g.priority ?? [...DEFAULT_PRIORITY];

  return Object.freeze({
    basketAbandonment: settings('basket-abandonment', ba, baParams),
    browseAbandonment: settings('browse-abandonment', bra, browseParams),
    basketPriceDrop: settings('basket-price-drop', pd, pdParams),
    wishlistRestock: settings('wishlist-restock', wr, wrParams),
    input: Object.freeze({ dedupWindowMs: cfg.input?.dedupWindow === undefined ? DEFAULT_DEDUP_WINDOW_MS : toMs(cfg.input.dedupWindow) }),
    guards:
      g.enabled === false
        ? undefined
        : Object.freeze({
            quietHours: quiet ? { startMin: minutesOf(quiet.start), endMin: minutesOf(quiet.end) } : null,
            defaultTimezone,
            cap: cap ? { max: cap.max, windowMs: toMs(cap.window) } : null,
            priority: Object.freeze(priority as TriggerType[]),
          }),
  });
}

export function loadCampaignsFile(path: string): CampaignsConfig {
  return resolveCampaigns(readCampaignsJson(path), path);
}

/** The JSON of a campaign file, unvalidated (KAIROS_ERR_CONFIG when unreadable or not JSON). */
export function readCampaignsJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KairosError('KAIROS_ERR_CONFIG', `cannot read campaign config ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new KairosError('KAIROS_ERR_CONFIG', `campaign config ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return json;
}
