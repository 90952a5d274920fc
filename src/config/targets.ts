/**
 * Targets (the upstream APIs we proxy to) from our `targets:` format and from go-token-handler
 * `proxies:` entries (converted by goProxyFile.ts), checked together: ids unique, mount paths sane
 * and not colliding with each other or with our own routes, clients known.
 */
import { DEFAULT_CLIENT_ID, ID_PATTERN } from './clients.ts';
import { InvalidValue, fail, isToken, parseDurationMs, parseHttpUrl, parsePathPrefix, splitList } from './parsers.ts';
import type { TargetEntry } from './schema.ts';
import type { CsrfMode, TargetConfig } from './types.ts';
import { ADSP_URN, isUrn } from '../proxy/directory.ts';

export const DEFAULT_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
export const DEFAULT_TARGET_TIMEOUT_MS = 30_000;
/** undici's own keep-alive defaults; go-token-handler's max-idle-conns default of 100 for connections. */
export const DEFAULT_POOL = { connections: 100, keepAliveTimeoutMs: 4_000, keepAliveMaxTimeoutMs: 600_000 };
/** go-token-handler routes served at the root when legacy routes are on. */
export const LEGACY_ROUTES = ['/login', '/callback', '/logout', '/userinfo'];
/** Headers the proxy manages itself. */
const FORBIDDEN_HEADERS = ['host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'proxy-connection'];

export interface TargetSource {
  entry: TargetEntry;
  /** `config file targets[2]`, `proxy file proxies[0]` */
  at: string;
  /** The id was derived (Go endpoint), so a clash is resolved by suffixing rather than refused. */
  derivedId: boolean;
  /** Field names as the file spells them, when they differ from ours (`url` is `target` in Go files). */
  fields: Partial<Record<string, string>>;
  /** A go-token-handler `proxies:` entry: Go's error shape and defaults (see goProxyFile.ts). */
  go?: { redirectBareMount: boolean };
}

export interface TargetContext {
  /** --csrf_mode, when set: the CSRF mode of every target that names none. */
  csrfMode?: CsrfMode;
  basePath: string;
  legacyRoutes: boolean;
  clientIds: ReadonlySet<string>;
  /** A service directory is configured: a target url may be a service URN. */
  directory?: boolean;
}

/** An http(s) URL, or (with a directory) an ADSP service URN resolved through it. */
function parseTargetUrl(raw: string, directory: boolean): string {
  const value = raw.trim();
  if (!isUrn(value)) return parseHttpUrl(value);
  if (!ADSP_URN.test(value)) return fail('a service URN must look like urn:ads:<namespace>:<service>[:<api>]');
  if (!directory) return fail('a service URN needs a service directory to resolve it: set --directory_url (DIRECTORY_URL)');
  return value;
}

export function buildTargets(sources: readonly TargetSource[], context: TargetContext): { targets: TargetConfig[]; problems: string[] } {
  const problems: string[] = [];
  const targets: TargetConfig[] = [];
  const ids = assignIds(sources, problems);
  const mounts = new Map<string, string>();

  sources.forEach((source, index) => {
    const id = ids[index];
    if (id === undefined) return;
    const field = (name: string) => `${source.at}.${source.fields[name] ?? name}`;
    const before = problems.length;
    const check = <T>(name: string, raw: string | number | undefined, parse: (raw: string | number) => T): T | undefined => {
      if (raw === undefined) return undefined;
      try {
        return parse(raw);
      } catch (error) {
        if (!(error instanceof InvalidValue)) throw error;
        problems.push(`${field(name)} ${JSON.stringify(raw)}: ${error.message}`);
        return undefined;
      }
    };
    const { entry } = source;

    const url = check('url', entry.url, (raw) => parseTargetUrl(String(raw), context.directory === true));
    const mountPath = check('mountPath', entry.mountPath ?? `${context.basePath}/targets/${id}`, (raw) => parsePathPrefix(String(raw)));
    if (mountPath !== undefined) {
      const clash = routeClash(mountPath, context);
      if (clash !== undefined) problems.push(`${field('mountPath')} ${JSON.stringify(mountPath)}: ${clash}`);
      const other = mounts.get(mountPath);
      if (other !== undefined) problems.push(`${field('mountPath')} ${JSON.stringify(mountPath)}: already the mount path of ${other}`);
      else mounts.set(mountPath, `target ${JSON.stringify(id)} (${source.at})`);
    }

    const tokenRequirement = entry.tokenRequirement ?? 'user';
    const clientId = entry.client ?? DEFAULT_CLIENT_ID;
    if (!context.clientIds.has(clientId) && (tokenRequirement !== 'none' || entry.client !== undefined)) {
      const known = [...context.clientIds];
      problems.push(
        `${field('client')} ${JSON.stringify(clientId)}: unknown client; ${known.length > 0 ? `configured clients: ${known.join(', ')}` : 'no client is configured (set --oidc_issuer or config file clients)'}`,
      );
    }

    const methods = check('methods', typeof entry.methods === 'string' ? entry.methods : entry.methods?.join(','), (raw) => parseMethods(String(raw))) ?? DEFAULT_METHODS;
    const timeoutMs = check('timeout', entry.timeout, positiveDurationMs) ?? DEFAULT_TARGET_TIMEOUT_MS;
    const keepAliveTimeoutMs = check('pool.keepAliveTimeout', entry.pool?.keepAliveTimeout, positiveDurationMs) ?? DEFAULT_POOL.keepAliveTimeoutMs;
    const keepAliveMaxTimeoutMs = check('pool.keepAliveMaxTimeout', entry.pool?.keepAliveMaxTimeout, positiveDurationMs) ?? DEFAULT_POOL.keepAliveMaxTimeoutMs;

    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(entry.headers ?? {})) {
      const lower = name.toLowerCase();
      if (!isToken(name)) problems.push(`${field('headers')}.${name}: not a valid header name`);
      else if (FORBIDDEN_HEADERS.includes(lower)) problems.push(`${field('headers')}.${name}: managed by the proxy, cannot be set`);
      else if (lower === 'authorization' && tokenRequirement !== 'none') problems.push(`${field('headers')}.${name}: the access token goes there; only allowed with tokenRequirement: none`);
      else if (/[\r\n\0]/.test(value)) problems.push(`${field('headers')}.${name}: the value must not contain line breaks`);
      else headers[name] = value;
    }

    if (problems.length > before || url === undefined || mountPath === undefined) return;
    targets.push({
      id,
      url,
      mountPath,
      clientId,
      methods,
      tokenRequirement,
      timeoutMs,
      headers,
      passSetCookie: entry.passSetCookie ?? false,
      allowMethodOverride: entry.allowMethodOverride ?? false,
      pool: { connections: entry.pool?.connections ?? DEFAULT_POOL.connections, keepAliveTimeoutMs, keepAliveMaxTimeoutMs },
      websocket: entry.websocket ?? false,
      csrf: {
        // Go frontends never sent an XSRF header: origin verification, which needs none, unless configured otherwise.
        mode: entry.csrf ?? context.csrfMode ?? (source.go ? 'origin' : 'token'),
        allMethods: entry.csrfAllMethods ?? false,
        // A target that never sends a token has nothing for a cross-site link to ride on.
        allowCrossSiteGet: entry.allowCrossSiteGet ?? tokenRequirement === 'none',
      },
      goErrors: source.go !== undefined,
      redirectBareMount: source.go?.redirectBareMount ?? false,
    });
  });
  return { targets, problems };
}

/** Explicit ids are checked and must be unique; derived (Go) ids get `-2`, `-3`... on a clash. */
function assignIds(sources: readonly TargetSource[], problems: string[]): (string | undefined)[] {
  const taken = new Map<string, string>();
  const ids: (string | undefined)[] = sources.map(() => undefined);
  sources.forEach((source, index) => {
    if (source.derivedId) return;
    const id = source.entry.id;
    if (!ID_PATTERN.test(id)) problems.push(`${source.at}.id ${JSON.stringify(id)}: must be 1-64 characters of A-Z a-z 0-9 . _ -`);
    else if (taken.has(id)) problems.push(`${source.at}.id ${JSON.stringify(id)}: duplicate target id (also ${taken.get(id)})`);
    else {
      taken.set(id, source.at);
      ids[index] = id;
    }
  });
  sources.forEach((source, index) => {
    if (!source.derivedId) return;
    let id = source.entry.id;
    for (let n = 2; taken.has(id); n++) id = `${source.entry.id.slice(0, 60)}-${n}`;
    taken.set(id, source.at);
    ids[index] = id;
  });
  return ids;
}

/** Why a mount path would shadow (or be shadowed by) our own routes, if it would. */
/** Health, readiness and metrics endpoints served at the root, as oauth2-proxy does. */
const OPERATIONAL_ROUTES = ['/healthz', '/readyz', '/ping', '/metrics'];

function routeClash(mountPath: string, { basePath, legacyRoutes }: TargetContext): string | undefined {
  const within = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);
  if (within(basePath, mountPath)) return `would cover the token handler API at ${basePath}`;
  if (within(mountPath, basePath) && !mountPath.startsWith(`${basePath}/targets/`)) {
    return `inside ${basePath} only ${basePath}/targets/... is free for targets`;
  }
  const probe = OPERATIONAL_ROUTES.find((route) => within(route, mountPath) || within(mountPath, route));
  if (probe !== undefined) return `collides with the operational route ${probe}`;
  if (legacyRoutes) {
    const route = LEGACY_ROUTES.find((legacy) => within(legacy, mountPath) || within(mountPath, legacy));
    if (route !== undefined) return `collides with the go-token-handler route ${route} (turn off --legacy_routes or mount elsewhere)`;
  }
  return undefined;
}

function parseMethods(raw: string): string[] {
  const methods = [...new Set(splitList(raw).map((method) => method.toUpperCase()))];
  if (methods.length === 0 || methods.some((method) => !/^[A-Z]+$/.test(method))) return fail('must be HTTP methods such as GET, POST');
  // TRACE echoes the request, the injected access token included, back to the browser; CONNECT opens a tunnel.
  const refused = methods.find((method) => method === 'TRACE' || method === 'CONNECT');
  if (refused !== undefined) return fail(`${refused} is never proxied (it would expose the access token or open a tunnel)`);
  return methods;
}

function positiveDurationMs(raw: string | number): number {
  const ms = typeof raw === 'number' ? Math.round(raw * 1000) : parseDurationMs(raw);
  if (ms <= 0) return fail('must be a positive duration');
  return ms;
}
