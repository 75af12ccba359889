/**
 * Campaign config: which trigger topologies run and with which parameters. Validated as a whole (every bad
 * field reported at once, by path), defaults filled in, then frozen.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { KairosError } from '../errors.js';
import { Duration, toMs } from './duration.js';
import type { CampaignSettings } from '../../topologies/common/campaign.js';
import type { BasketAbandonmentParams } from '../../topologies/basket-abandonment/index.js';
import { defaults as basketAbandonmentDefaults } from '../../topologies/basket-abandonment/index.js';

const ChannelName = Type.Union([Type.Literal('push'), Type.Literal('email'), Type.Literal('onsite'), Type.Literal('webhook')]);

function campaign<P extends TSchema>(params: P) {
  return Type.Object(
    {
      enabled: Type.Optional(Type.Boolean({ default: true })),
      campaignId: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'id reported on triggers; defaults to the topology name' })),
      channels: Type.Optional(Type.Array(ChannelName, { minItems: 1, uniqueItems: true })),
      expiresAfter: Type.Optional(Duration),
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

export const CampaignsConfigSchema = Type.Object(
  {
    defaults: Type.Optional(
      Type.Object({ channels: Type.Optional(Type.Array(ChannelName, { minItems: 1, uniqueItems: true })), expiresAfter: Type.Optional(Duration) }, { additionalProperties: false }),
    ),
    campaigns: Type.Optional(
      Type.Object({ 'basket-abandonment': Type.Optional(campaign(BasketAbandonmentParamsSchema)) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

export type CampaignsConfigInput = Static<typeof CampaignsConfigSchema>;

/** The resolved config: every topology's settings with durations in ms. */
export interface CampaignsConfig {
  readonly basketAbandonment: (CampaignSettings<BasketAbandonmentParams> & { readonly enabled: boolean }) | undefined;
}

function fail(source: string, errors: string[]): never {
  throw new KairosError('KAIROS_ERR_CONFIG', `invalid campaign config (${source}):\n  ${errors.join('\n  ')}`, { details: { errors } });
}

/** Validates and resolves a campaign config object. Throws KAIROS_ERR_CONFIG naming every bad field. */
export function resolveCampaigns(input: unknown, source = 'inline'): CampaignsConfig {
  if (!Value.Check(CampaignsConfigSchema, input)) {
    const errors = [...Value.Errors(CampaignsConfigSchema, input)]
      // Union branches repeat the same path; keep the first message per path.
      .filter((e, i, all) => all.findIndex((x) => x.path === e.path) === i)
      .map((e) => `${e.path || '/'}: ${e.message}${e.value === undefined ? '' : ` (got ${JSON.stringify(e.value)})`}`);
    fail(source, errors);
  }
  const cfg = input;
  const defChannels = cfg.defaults?.channels ?? ['push', 'email'];
  const defExpires = toMs(cfg.defaults?.expiresAfter ?? '24h');
  const ba = cfg.campaigns?.['basket-abandonment'] ?? {};
  const bap = ba.params ?? {};
  const params: BasketAbandonmentParams = {
    inactivityGap: bap.inactivityGap === undefined ? basketAbandonmentDefaults.inactivityGap : toMs(bap.inactivityGap),
    reentryCooldown: bap.reentryCooldown === undefined ? basketAbandonmentDefaults.reentryCooldown : toMs(bap.reentryCooldown),
    stateTtl: bap.stateTtl === undefined ? basketAbandonmentDefaults.stateTtl : toMs(bap.stateTtl),
  };
  if (params.inactivityGap <= 0) fail(source, ['/campaigns/basket-abandonment/params/inactivityGap: must be greater than 0']);
  return Object.freeze({
    basketAbandonment: Object.freeze({
      enabled: ba.enabled ?? true,
      campaignId: ba.campaignId ?? 'basket-abandonment',
      channels: Object.freeze([...(ba.channels ?? defChannels)]),
      expiresAfterMs: ba.expiresAfter === undefined ? defExpires : toMs(ba.expiresAfter),
      params: Object.freeze(params),
    }),
  });
}

export function loadCampaignsFile(path: string): CampaignsConfig {
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
  return resolveCampaigns(json, path);
}
