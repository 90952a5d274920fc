/**
 * What the proxy knows about a target, computed once at startup so the request path only looks
 * things up: its upstream origin and base path, the session cookie names, the client's tenant and
 * CORS origins, the header policies. Also the credential decision (session → access token) shared by
 * the HTTP proxy and the WebSocket proxy.
 */
import type { TargetConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { resolveTenant, type TenantResolution } from '../http/tenant.ts';
import { configuredAppOrigins } from '../http/publicPath.ts';
import type { ResponseHeaderPolicy, UpstreamHeaderPolicy } from './headers.ts';
import { parseUpstreamBase, type UpstreamBase } from './paths.ts';
import { RefreshUnavailableError, SessionEndedError } from '../session/errors.ts';
import type { ActiveSession } from '../session/model.ts';
import { ANY_TENANT, NOT_IN_MEMORY, type SessionExpectation } from '../session/service.ts';

export interface TargetPlan {
  target: TargetConfig;
  /** The mount path without a trailing slash (`''` for a target mounted at the root). */
  mountPath: string;
  base: UpstreamBase;
  /** Whether any tenant of the client allows other origins (CORS work is skipped otherwise). */
  hasCors: boolean;
  /** `Access-Control-Allow-Methods` for preflights. */
  allowMethods: string;
  methods: ReadonlySet<string>;
  sessionCookie: { secure: string; insecure: string };
  /** Lower-case tenant header name. */
  tenantHeader: string;
  upstreamHeaders: UpstreamHeaderPolicy;
  responseHeaders: ResponseHeaderPolicy;
  /** The tenant of a request, as every client route decides it (clientLookup.resolveTenant). */
  tenantOf(headerValue: string | undefined): TenantResolution;
  /**
   * Whether a request of this resolution acts in the tenant of its session (a tenant-scoped client, no
   * tenant header: as ADSP does it); its CSRF and origin checks then wait for the session's tenant.
   */
  tenantFromSession(resolution: TenantResolution): boolean;
  /** Origins besides our own that may call this target with credentials: the client's (tenant's) allowedOrigins. */
  corsOrigins(tenant: string | null): ReadonlySet<string>;
  /** The tenants the client serves (`null` alone: not tenant-scoped). */
  servedTenants: ReadonlySet<string | null>;
  /** Our own origin plus corsOrigins(tenant), cached per own origin seen (bounded). */
  csrfOrigins(tenant: string | null, ownOrigin: string): ReadonlySet<string>;
}

const MAX_CACHED_OWN_ORIGINS = 32;

export function planTarget(ctx: AppContext, target: TargetConfig): TargetPlan {
  const base = parseUpstreamBase(target.url);
  const client = ctx.registry.client(target.clientId);
  if (!client && target.tokenRequirement !== 'none') {
    throw new Error(`target "${target.id}" needs tokens from client "${target.clientId}", which is not configured`);
  }
  let mountPath = target.mountPath;
  while (mountPath.endsWith('/')) mountPath = mountPath.slice(0, -1);

  // Tenants and their origins are configuration: fixed for the life of the process.
  const tenantScoped = client !== undefined && ctx.registry.tenants(target.clientId) !== null;
  const servedTenants = new Set<string | null>(ctx.registry.tenants(target.clientId) ?? [null]);
  const originsByTenant = new Map<string | null, ReadonlySet<string>>();
  // CSRF also accepts the origins the app runs on by its configuration (publicPath.configuredAppOrigins).
  const appOriginsByTenant = new Map<string | null, readonly string[]>();
  if (client) {
    for (const tenant of ctx.registry.tenants(target.clientId) ?? [null]) {
      const variant = ctx.registry.variant(target.clientId, tenant) ?? client;
      originsByTenant.set(tenant, new Set(variant.allowedOrigins));
      appOriginsByTenant.set(tenant, configuredAppOrigins(variant));
    }
  }
  const none: ReadonlySet<string> = new Set();
  const csrfCache = new Map<string | null, Map<string, ReadonlySet<string>>>();
  const notScoped: TenantResolution = { ok: true, tenant: null };
  const isOwnCookie = (name: string): boolean => ctx.cookies.isOwnCookie(name);

  return {
    target,
    mountPath,
    base,
    hasCors: [...originsByTenant.values()].some((set) => set.size > 0),
    allowMethods: target.methods.join(', '),
    methods: new Set(target.methods),
    sessionCookie: {
      secure: ctx.cookies.sessionCookieName(target.clientId, true),
      insecure: ctx.cookies.sessionCookieName(target.clientId, false),
    },
    tenantHeader: ctx.config.tenantHeader.toLowerCase(),
    upstreamHeaders: {
      isOwnCookie,
      xsrfHeader: ctx.cookies.xsrfHeaderName.toLowerCase(),
      extra: Object.entries(target.headers).map(([name, value]) => [name.toLowerCase(), value] as const),
      upstreamHost: new URL(base.origin).host,
      allowMethodOverride: target.allowMethodOverride,
    },
    responseHeaders: { passSetCookie: target.passSetCookie, isOwnCookie },
    tenantOf(headerValue) {
      return tenantScoped ? resolveTenant(ctx, target.clientId, headerValue) : notScoped;
    },
    tenantFromSession(resolution) {
      return tenantScoped && !resolution.ok && resolution.error === 'tenant_required';
    },
    servedTenants,
    corsOrigins(tenant) {
      return originsByTenant.get(tenant) ?? none;
    },
    csrfOrigins(tenant, ownOrigin) {
      let byOwn = csrfCache.get(tenant);
      if (!byOwn) {
        byOwn = new Map();
        csrfCache.set(tenant, byOwn);
      }
      let set = byOwn.get(ownOrigin);
      if (set) return set;
      set = new Set([ownOrigin, ...(originsByTenant.get(tenant) ?? none), ...(appOriginsByTenant.get(tenant) ?? [])]);
      // The Host header is the browser's to choose: cache a few, never grow without bound.
      if (byOwn.size < MAX_CACHED_OWN_ORIGINS) byOwn.set(ownOrigin, set);
      return set;
    },
  };
}

/** The credential a request is forwarded with, or why it is refused. */
export type Credential =
  | { ok: true; token: string | undefined; session: ActiveSession | undefined; clearCookie: boolean }
  | { ok: false; status: number; error: string; detail: string; clearCookie: boolean };

const ANONYMOUS: Credential = { ok: true, token: undefined, session: undefined, clearCookie: false };
const ANONYMOUS_CLEAR: Credential = { ok: true, token: undefined, session: undefined, clearCookie: true };

function loginRequired(clearCookie: boolean, detail: string): Credential {
  return { ok: false, status: 401, error: 'login_required', detail, clearCookie };
}

/**
 * Applies the target's token requirement to the session cookie of its client: `none` never looks;
 * `user` refuses without a live session (401, never a redirect: API calls cannot follow a login);
 * `user-or-none` falls back to anonymous. Refreshes the access token when it is about to expire
 * (single-flight in SessionService). Store failures propagate (the app's error handler answers 503).
 *
 * Synchronous when memory has the answer (the cookie was seen before, its session is cached and its
 * access token is not due for refresh): a browser's steady stream of API calls costs no promise.
 */
export function resolveCredential(
  ctx: AppContext,
  plan: TargetPlan,
  cookieValue: string | undefined,
  tenant: TenantResolution,
): Credential | Promise<Credential> {
  const requirement = plan.target.tokenRequirement;
  if (requirement === 'none') return ANONYMOUS;
  // As for the client's own routes: the tenant the reverse proxy names must be one the client serves. Without
  // the header, the request acts in the tenant of its session (as ADSP does).
  const fromSession = plan.tenantFromSession(tenant);
  if (!tenant.ok && !fromSession) return { ok: false, status: tenant.status, error: tenant.error, detail: tenant.detail, clearCookie: false };
  const required = requirement === 'user';
  if (!cookieValue) return required ? loginRequired(false, 'this API needs a logged-in session') : ANONYMOUS;
  const wanted = tenant.ok ? tenant.tenant : ANY_TENANT;
  // Any tenant's session is looked up, so that one of another tenant than the header's is told apart from
  // none at all: it is refused, but its cookie is not cleared.
  const expect: SessionExpectation = { clientId: plan.target.clientId, tenant: plan.servedTenants.has(null) ? null : ANY_TENANT };
  const inMemory = ctx.sessions.resolveInMemory(cookieValue, expect);
  if (inMemory === NOT_IN_MEMORY) return ctx.sessions.resolve(cookieValue, expect).then((session) => inTenant(ctx, plan, session, wanted, required));
  return inTenant(ctx, plan, inMemory, wanted, required);
}

/** The credential of a session looked up in any tenant, for a request of tenant `wanted`. */
function inTenant(
  ctx: AppContext,
  plan: TargetPlan,
  session: ActiveSession | undefined,
  wanted: string | null | typeof ANY_TENANT,
  required: boolean,
): Credential | Promise<Credential> {
  if (session && !plan.servedTenants.has(session.record.tenant)) return withToken(ctx, undefined, required);
  if (session && wanted !== ANY_TENANT && session.record.tenant !== wanted) {
    return required ? loginRequired(false, 'the session is of another tenant; log in to this one') : ANONYMOUS;
  }
  return withToken(ctx, session, required);
}

/** The credential of a resolved (or missing) session: its current access token, refreshed first if due. */
function withToken(ctx: AppContext, session: ActiveSession | undefined, required: boolean): Credential | Promise<Credential> {
  // A cookie that no longer resolves (expired, logged out, forged) is cleared.
  if (!session) return required ? loginRequired(true, 'the session has ended; log in again') : ANONYMOUS_CLEAR;
  const current = ctx.sessions.currentAccessToken(session);
  if (current !== undefined) return { ok: true, token: current, session, clearCookie: false };
  return ctx.sessions.accessToken(session).then(
    (token): Credential => ({ ok: true, token, session, clearCookie: false }),
    (err: unknown): Credential => {
      if (err instanceof SessionEndedError) return required ? loginRequired(true, 'the session has ended; log in again') : ANONYMOUS_CLEAR;
      if (err instanceof RefreshUnavailableError) {
        return { ok: false, status: 503, error: 'idp_unavailable', detail: 'the identity provider could not be reached to refresh the access token; try again shortly', clearCookie: false };
      }
      throw err;
    },
  );
}
