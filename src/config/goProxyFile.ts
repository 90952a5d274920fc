/**
 * go-token-handler's proxy file, accepted as-is:
 *
 *   proxies:
 *     - endpoint: /proxy
 *       target: http://127.0.0.1:9081
 *       parameters: { idle-conn-timeout: 120s, max-idle-conns: 100, keep-alive: 30s, timeout: 90s }
 *
 * Each entry becomes one of our targets: id derived from the endpoint, mounted at the endpoint,
 * using the `default` client and requiring a user session, as the Go service did. What a Go frontend relies
 * on is kept: an endpoint with a trailing slash (`/api/`, Go ServeMux's subtree pattern) serves its
 * subtree and answers the bare path with a 301; upstream Set-Cookie reaches the browser
 * (`pass-set-cookie: false` turns it off); the CSRF check is origin verification, which needs no
 * script cooperation (`csrf: token` for the XSRF cookie-to-header check); errors come in Go's JSON shape.
 */
import type { GoProxyEntry, TargetEntry } from './schema.ts';
import type { TargetSource } from './targets.ts';

/** `/api/orders` → `api-orders`; `/` → `root`. Uniqueness is settled by the caller. */
export function idFromEndpoint(endpoint: string): string {
  const id = endpoint
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 64);
  return id === '' ? 'root' : id;
}

/** One Go proxy entry as a target in our format, remembering the Go key names for messages. */
export function goProxyToTarget(entry: GoProxyEntry, at: string): TargetSource {
  const parameters = entry.parameters ?? {};
  const pick = <K extends keyof typeof parameters>(current: K, legacy: K) =>
    parameters[current] !== undefined ? { value: parameters[current], key: String(current) } : { value: parameters[legacy], key: String(legacy) };
  const idle = pick('idle-conn-timeout', 'idleConnTimeout');
  const conns = pick('max-idle-conns', 'maxIdleConns');
  const keepAlive = pick('keep-alive', 'dialKeepAlive');
  const timeout = pick('timeout', 'dialTimeout');

  // `/api/` is Go's subtree pattern; we mount the subtree at `/api` and redirect the bare path.
  const subtree = entry.endpoint.length > 1 && entry.endpoint.endsWith('/');
  const mountPath = subtree ? entry.endpoint.replace(/\/+$/, '') : entry.endpoint;
  const target: TargetEntry = {
    id: idFromEndpoint(mountPath),
    url: entry.target,
    mountPath,
    client: 'default',
    tokenRequirement: 'user',
    passSetCookie: parameters['pass-set-cookie'] ?? true,
    ...(parameters.csrf !== undefined && { csrf: parameters.csrf }),
    ...(parameters['allow-cross-site-get'] !== undefined && { allowCrossSiteGet: parameters['allow-cross-site-get'] }),
    ...(timeout.value !== undefined && { timeout: timeout.value as string | number }),
    pool: {
      ...(conns.value !== undefined && { connections: conns.value as number }),
      ...(idle.value !== undefined && { keepAliveTimeout: idle.value as string | number }),
      ...(keepAlive.value !== undefined && { keepAliveMaxTimeout: keepAlive.value as string | number }),
    },
  };
  return {
    entry: target,
    at,
    derivedId: true,
    go: { redirectBareMount: subtree },
    fields: {
      passSetCookie: 'parameters.pass-set-cookie',
      csrf: 'parameters.csrf',
      id: 'endpoint',
      url: 'target',
      mountPath: 'endpoint',
      timeout: `parameters.${timeout.key}`,
      'pool.connections': `parameters.${conns.key}`,
      'pool.keepAliveTimeout': `parameters.${idle.key}`,
      'pool.keepAliveMaxTimeout': `parameters.${keepAlive.key}`,
    },
  };
}
