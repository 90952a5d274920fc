/**
 * Host header hygiene. The host a request names (its Host header, or X-Forwarded-Host from a trusted
 * proxy) becomes our origin when --public_url is not set: the OIDC redirect_uri, the failure redirect,
 * the CSRF and return_to origin checks and X-Forwarded-Host towards targets are built from it. A value
 * that is not a plain `host[:port]` (`x@evil.example`, `a b`, `[::1`, `:99999`, `evil/x`) could turn into
 * a different URL than it looks like, or make URL parsing throw; a request with two Host fields is
 * ambiguous (RFC 9112 §3.2: a server MUST answer 400). Both are refused before any route runs.
 */

/** `name`, `name:port`, `1.2.3.4:port` or `[v6]:port`: what an authority without userinfo may be. */
const HOST_PATTERN = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252}))(?::(\d{1,5}))?$/;

/**
 * The last host found plain: a browser (and a reverse proxy) sends the same Host on every request, so the
 * pattern runs once per distinct value in a row instead of on every request. Only a value that passed is kept.
 */
let lastPlainHost = '';

/** Whether `value` is a syntactically plain host with an optional port (1-65535). */
export function isPlainHost(value: string): boolean {
  if (value === lastPlainHost && value !== '') return true;
  if (!plainHost(value)) return false;
  lastPlainHost = value;
  return true;
}

function plainHost(value: string): boolean {
  const match = HOST_PATTERN.exec(value);
  if (!match) return false;
  const port = match[1];
  if (port === undefined) return true;
  const n = Number(port);
  return n >= 1 && n <= 65535;
}

/** How many Host fields the raw header list carries (Node keeps only the first in `headers.host`). */
export function countHostFields(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') count += 1;
  }
  return count;
}

export type HostCheck = { ok: true } | { ok: false; reason: string };

/**
 * Checks the Host fields of a request and the host Fastify derived from them (`request.host`, which is
 * X-Forwarded-Host when the peer is a trusted proxy). A request without any Host (HTTP/1.0 probes) passes:
 * Node already refuses HTTP/1.1 requests without one.
 */
export function checkHost(rawHeaders: readonly string[], effectiveHost: string | undefined): HostCheck {
  const fields = countHostFields(rawHeaders);
  if (fields > 1) return { ok: false, reason: 'more than one Host header' };
  if (fields === 0 && (effectiveHost === undefined || effectiveHost === '')) return { ok: true };
  if (effectiveHost === undefined || !isPlainHost(effectiveHost)) return { ok: false, reason: 'the Host (or trusted X-Forwarded-Host) is not a plain host[:port]' };
  return { ok: true };
}
