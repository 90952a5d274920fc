/**
 * Parsers of the per-client OIDC settings (the `oidc_*` options of the `default` client and the matching
 * config-file fields): claim paths, extra authorization parameters, end-session URL templates, Entra
 * directory ids. Like parsers.ts they throw `InvalidValue` and never repeat the value.
 */
import { fail, InvalidValue, parseHttpUrl, splitList } from './parsers.ts';

/** Parameters the authorization request sets itself; extra parameters may not override them. */
export const RESERVED_AUTH_PARAMS = ['response_type', 'client_id', 'client_secret', 'redirect_uri', 'scope', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'request', 'request_uri'];

/** Placeholders an end-session URL template may hold. */
export const END_SESSION_PLACEHOLDERS = ['client_id', 'post_logout_redirect_uri', 'id_token_hint'] as const;

/**
 * A claim path: property names separated by dots, a name with dots or other punctuation in brackets
 * and quotes: `resource_access["urn:ads:platform:token-handler"].roles`, `realm_access.roles`, `roles`.
 * `*` as a name matches every property (`resource_access.*.roles`). A path that is a whole http(s) URL is
 * one claim name: Auth0's namespaced claims (`https://example.com/roles`).
 */
export function parseClaimPath(raw: string): string[] {
  const text = raw.trim();
  if (/^https?:\/\/\S+$/i.test(text)) return [text];
  const segments: string[] = [];
  let i = 0;
  const bad = (why: string): never => {
    throw new InvalidValue(`${why} (write a claim path like realm_access.roles or resource_access["my-client"].roles)`);
  };
  if (text === '') bad('must not be empty');
  while (i < text.length) {
    if (text[i] === '[') {
      const quote = text[i + 1];
      if (quote !== '"' && quote !== "'") bad('a bracketed name must be quoted');
      const end = text.indexOf(`${quote}]`, i + 2);
      if (end < 0) bad('unterminated bracketed name');
      segments.push(text.slice(i + 2, end));
      i = end + 2;
    } else {
      const match = /^(?:\*|[A-Za-z0-9_$:-]+)/.exec(text.slice(i));
      if (!match) bad(`unexpected ${JSON.stringify(text[i])}`);
      segments.push(match![0]);
      i += match![0].length;
    }
    if (i < text.length) {
      if (text[i] === '.') {
        i += 1;
        if (i >= text.length || text[i] === '[' || text[i] === '.') bad('a dot must be followed by a name');
      } else if (text[i] !== '[') bad(`unexpected ${JSON.stringify(text[i])}`);
    }
  }
  if (segments.some((segment) => segment === '')) bad('empty name');
  return segments;
}

/** Comma-separated claim paths (commas inside brackets belong to the name). */
export function parseClaimPathList(raw: string): string[][] {
  const items: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (const char of raw) {
    if (quote !== undefined) {
      if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") quote = char;
    else if (char === ',') {
      items.push(current);
      current = '';
      continue;
    }
    current += char;
  }
  items.push(current);
  const paths = items.filter((item) => item.trim() !== '');
  if (paths.length === 0) return fail('must name at least one claim path');
  return paths.map((path) => parseClaimPath(path));
}

/** `audience=https://api&acr_values=mfa`: query syntax, values percent-decoded; reserved names refused. */
export function parseAuthParams(raw: string): Record<string, string> {
  const params: Record<string, string> = {};
  const text = raw.trim().replace(/^\?/, '');
  if (text === '') return params;
  for (const [key, value] of new URLSearchParams(text)) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(key)) fail('parameter names are letters, digits, _ . - (write name=value&name=value)');
    checkAuthParam(key);
    if (key in params) fail(`parameter ${key} is given twice`);
    params[key] = value;
  }
  return params;
}

/** Throws for a parameter the authorization request sets itself. */
export function checkAuthParam(key: string): void {
  if (RESERVED_AUTH_PARAMS.includes(key)) fail(`${key} is set by the token handler itself and cannot be overridden`);
}

/**
 * An https (http in development) URL whose query may hold {client_id}, {post_logout_redirect_uri} and
 * {id_token_hint}, each filled in URL-encoded at logout.
 */
export function parseEndSessionTemplate(raw: string): string {
  const value = raw.trim();
  for (const [, name] of value.matchAll(/\{([^}]*)\}/g)) {
    if (!(END_SESSION_PLACEHOLDERS as readonly string[]).includes(name!)) fail(`unknown placeholder {${name}}; allowed: ${END_SESSION_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`);
  }
  parseHttpUrl(value.replace(/\{[^}]*\}/g, 'x'), { allowQuery: true });
  return value;
}

/** Entra ID directory ids (GUIDs, `tid`), or `*` alone for any directory. */
export function parseTidList(raw: string): string[] {
  const ids = [...new Set(splitList(raw))];
  if (ids.length === 0) return fail('must name at least one tenant id, or *');
  if (ids.includes('*')) {
    if (ids.length > 1) fail('* (any directory) cannot be combined with tenant ids');
    return ids;
  }
  for (const id of ids) if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) fail('must be tenant ids (GUIDs such as 72f988bf-86f1-41af-91ab-2d7cd011db47), or *');
  return ids;
}
