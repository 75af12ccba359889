/**
 * Keeps secrets out of messages and logs: the user-info part of URLs (`redis://user:password@host`) and the
 * values of variables declared secret. Applied where text leaves the process (the CLI's error path, loggers),
 * so a message built anywhere below cannot leak what it happened to include.
 */

// scheme://userinfo@ — userinfo is everything up to the last '@' before the host (no '/', whitespace or quotes).
const URL_USERINFO = /\b([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^\s/?#"'`<>]*@/g;

/** `redis://user:pw@host:6379/0` → `redis://***@host:6379/0`, wherever URLs appear in `text`. */
export function redactUrlCredentials(text: string): string {
  return text.replace(URL_USERINFO, '$1***@');
}

/** Secret values shorter than this are not searched for in text (too likely to match ordinary words). */
const MIN_SECRET_LENGTH = 4;

/**
 * Redacts URL credentials and every occurrence of the given secret values (the values of variables declared
 * secret, API keys, passwords of configured URLs) in `text`.
 */
export function redactSecrets(text: string, secrets: Iterable<string> = []): string {
  let out = redactUrlCredentials(text);
  const values = [...secrets].filter((s) => s.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
  for (const s of values) out = out.split(s).join('***');
  return out;
}

/** The password (and user) of a URL, when it has one: values to redact besides the URL itself. */
export function urlCredentials(url: string): string[] {
  // Up to the last '@' of the URL: a malformed URL (a space or '@' in the password) must not leak either.
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.exec(url);
  const at = url.lastIndexOf('@');
  if (!scheme || at <= scheme[0].length) return [];
  const info = url.slice(scheme[0].length, at);
  const colon = info.indexOf(':');
  const parts = colon < 0 ? [info] : [info.slice(colon + 1)];
  return parts.flatMap((p) => {
    try {
      const decoded = decodeURIComponent(p);
      return decoded === p ? [p] : [p, decoded];
    } catch {
      return [p];
    }
  });
}
