/**
 * Message texts per trigger type and language, rendered from the trigger and the live catalog state at send time
 * (a price drop shows the live price). English is the fallback for other locales. Pure functions.
 */
import type { Trigger, TriggerType } from '../../schemas/contract.js';
import type { CatalogState } from './state-view.js';

export interface RenderInput {
  readonly trigger: Trigger;
  readonly live: CatalogState | undefined;
  /** BCP-47, e.g. de-DE; undefined = en. */
  readonly locale: string | undefined;
  readonly shopUrl: string;
}

export interface Rendered {
  readonly language: string;
  readonly subject: string;
  /** One short line (push body, onsite banner). */
  readonly short: string;
  readonly text: string;
  readonly html: string;
  readonly link: string;
}

interface Vars {
  readonly product: string;
  readonly price: string;
  readonly oldPrice: string;
  readonly count: string;
}

type Template = { readonly subject: (v: Vars) => string; readonly short: (v: Vars) => string; readonly body: (v: Vars) => string };

const TEMPLATES: Record<string, Record<TriggerType, Template>> = {
  en: {
    BASKET_PRICE_DROP: {
      subject: (v) => `Price drop: ${v.product} is now ${v.price}`,
      short: (v) => `${v.product} in your basket dropped from ${v.oldPrice} to ${v.price}.`,
      body: (v) => `Good news: ${v.product}, which is in your basket, now costs ${v.price} instead of ${v.oldPrice}.`,
    },
    WISHLIST_BACK_IN_STOCK: {
      subject: (v) => `Back in stock: ${v.product}`,
      short: (v) => `${v.product} from your wishlist is available again.`,
      body: (v) => `${v.product} from your wishlist is back in stock (${v.count} available). Be quick!`,
    },
    BASKET_ABANDONED: {
      subject: () => 'You left something in your basket',
      short: (v) => `${v.count} item(s) are waiting in your basket.`,
      body: (v) => `You still have ${v.count} item(s) in your basket. Complete your order whenever you are ready.`,
    },
    CHECKOUT_ABANDONED: {
      subject: () => 'Complete your order',
      short: () => 'Your checkout is almost done.',
      body: (v) => `You were about to check out ${v.count} item(s). Your basket is saved for you.`,
    },
    BROWSE_ABANDONED: {
      subject: () => 'Still thinking about it?',
      short: (v) => `Take another look at the ${v.count} products you viewed.`,
      body: (v) => `You recently looked at ${v.count} products. Here they are again.`,
    },
  },
  de: {
    BASKET_PRICE_DROP: {
      subject: (v) => `Preissenkung: ${v.product} kostet jetzt ${v.price}`,
      short: (v) => `${v.product} in deinem Warenkorb kostet jetzt ${v.price} statt ${v.oldPrice}.`,
      body: (v) => `Gute Nachricht: ${v.product} aus deinem Warenkorb kostet jetzt ${v.price} statt ${v.oldPrice}.`,
    },
    WISHLIST_BACK_IN_STOCK: {
      subject: (v) => `Wieder da: ${v.product}`,
      short: (v) => `${v.product} von deiner Wunschliste ist wieder verfügbar.`,
      body: (v) => `${v.product} von deiner Wunschliste ist wieder auf Lager (${v.count} verfügbar). Schnell sein lohnt sich!`,
    },
    BASKET_ABANDONED: {
      subject: () => 'Du hast etwas im Warenkorb vergessen',
      short: (v) => `${v.count} Artikel warten in deinem Warenkorb.`,
      body: (v) => `In deinem Warenkorb liegen noch ${v.count} Artikel. Schließe deine Bestellung ab, wann immer du bereit bist.`,
    },
    CHECKOUT_ABANDONED: {
      subject: () => 'Schließe deine Bestellung ab',
      short: () => 'Deine Bestellung ist fast fertig.',
      body: (v) => `Du warst kurz davor, ${v.count} Artikel zu bestellen. Dein Warenkorb ist gespeichert.`,
    },
    BROWSE_ABANDONED: {
      subject: () => 'Noch unentschlossen?',
      short: (v) => `Schau dir die ${v.count} Produkte noch einmal an.`,
      body: (v) => `Du hast dir kürzlich ${v.count} Produkte angesehen. Hier sind sie noch einmal.`,
    },
  },
};

export const LANGUAGES = Object.keys(TEMPLATES);

interface MoneyLike {
  readonly amount: number;
  readonly currency: string;
}
const isMoney = (x: unknown): x is MoneyLike =>
  typeof x === 'object' && x !== null && typeof (x as MoneyLike).amount === 'number' && typeof (x as MoneyLike).currency === 'string';

function money(m: unknown, locale: string): string {
  if (!isMoney(m)) return '';
  try {
    return new Intl.NumberFormat(locale, { style: 'currency', currency: m.currency }).format(m.amount / 100);
  } catch {
    return `${(m.amount / 100).toFixed(2)} ${m.currency}`;
  }
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

function count(t: Trigger): number {
  const p = t.payload;
  if (t.type === 'WISHLIST_BACK_IN_STOCK') return typeof p.stock === 'number' ? p.stock : 1;
  const list = Array.isArray(p.items) ? p.items : Array.isArray(p.products) ? p.products : [];
  return list.length;
}

export function render(input: RenderInput): Rendered {
  const { trigger: t, live } = input;
  const requested = (input.locale ?? 'en').split('-')[0] ?? 'en';
  const language = Object.hasOwn(TEMPLATES, requested) ? requested : 'en';
  const tpl = (TEMPLATES[language] as Record<TriggerType, Template>)[t.type];
  const locale = input.locale ?? 'en';
  const p = t.payload;
  const product = typeof p.productId === 'string' ? p.productId : typeof p.sku === 'string' ? p.sku : '';
  const livePrice = t.type === 'BASKET_PRICE_DROP' && live?.price && isMoney(p.newPrice) && live.price.currency === p.newPrice.currency ? live.price : p.newPrice;
  const liveStock = t.type === 'WISHLIST_BACK_IN_STOCK' && live?.stock !== undefined ? live.stock : undefined;
  const vars: Vars = {
    product,
    price: money(livePrice, locale),
    oldPrice: money(p.oldPrice, locale),
    count: String(liveStock ?? count(t)),
  };
  const base = input.shopUrl.replace(/\/+$/, '');
  const link =
    t.type === 'BASKET_PRICE_DROP' || t.type === 'BASKET_ABANDONED' || t.type === 'CHECKOUT_ABANDONED'
      ? `${base}/basket?utm_campaign=${encodeURIComponent(t.campaignId)}&kt=${t.triggerId}`
      : `${base}/p/${encodeURIComponent(product)}?utm_campaign=${encodeURIComponent(t.campaignId)}&kt=${t.triggerId}`;
  const subject = tpl.subject(vars);
  const body = tpl.body(vars);
  const linkText = language === 'de' ? 'Zum Shop' : 'Go to the shop';
  return {
    language,
    subject,
    short: tpl.short(vars),
    text: `${body}\n\n${linkText}: ${link}\n`,
    html: `<!doctype html><html lang="${language}"><body><p>${escapeHtml(body)}</p><p><a href="${escapeHtml(link)}">${escapeHtml(linkText)}</a></p></body></html>`,
    link,
  };
}
