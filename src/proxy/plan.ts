/**
 * What the proxy knows about a target, computed once at startup so the request path only looks
 * things up: its upstream origin and base path, the session cookie names, the client's tenant and
 * CORS origins, the header policies. Also the credential decision (session → access token) shared by
 * the HTTP proxy and the WebSocket proxy.
 */
import type { ClientConfig, TargetConfig } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import type { ResponseHeaderPolicy, UpstreamHeaderPolicy } from '../security/headers.ts';
import { parseUpstreamBase, type UpstreamBase } from '../security/paths.ts';
import { RefreshUnavailableError, SessionEndedError } from '../session/errors.ts';
import type { ActiveSession } from '../session/model.ts';

export interface TargetPlan {
  target: TargetConfig;
  /** The mount path without a trailing slash (`''` for a target mounted at the root). */
  mountPath: string;
  base: UpstreamBase;
  client: ClientConfig | undefined;
  /** Origins besides our own that may call this target with credentials (the client's allowedOrigins). */
  corsOrigins: ReadonlySet<string>;
  /** `Access-Control-Allow-Methods` for preflights. */
  allowMethods: string;
  methods: ReadonlySet<string>;
  sessionCookie: { secure: string; insecure: string };
  /** Lower-case tenant header name. */
  tenantHeader: string;
  upstreamHeaders: UpstreamHeaderPolicy;
  responseHeaders: ResponseHeaderPolicy;
  /** Our own origin plus the client's allowed origins, per own origin seen (bounded). */
  csrfOrigins(ownOrigin: string): ReadonlySet<string>;
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
  const corsOrigins: ReadonlySet<string> = new Set(client?.allowedOrigins ?? []);
  const byOwnOrigin = new Map<string, ReadonlySet<string>>();
  const isOwnCookie = (name: string): boolean => ctx.cookies.isOwnCookie(name);
  return {
    target,
    mountPath,
    base,
    client,
    corsOrigins,
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
    },
    responseHeaders: { passSetCookie: target.passSetCookie, isOwnCookie },
    csrfOrigins(ownOrigin) {
      let set = byOwnOrigin.get(ownOrigin);
      if (set) return set;
      set = new Set([ownOrigin, ...corsOrigins]);
      // The Host header is the browser's to choose: cache a few, never grow without bound.
      if (byOwnOrigin.size < MAX_CACHED_OWN_ORIGINS) byOwnOrigin.set(ownOrigin, set);
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
 */
export async function resolveCredential(
  ctx: AppContext,
  plan: TargetPlan,
  cookieValue: string | undefined,
  tenantHeaderValue: string | undefined,
): Promise<Credential> {
  const requirement = plan.target.tokenRequirement;
  if (requirement === 'none') return ANONYMOUS;
  const required = requirement === 'user';
  let tenant: string | null = null;
  const clientTenant = plan.client?.tenant;
  if (clientTenant !== undefined) {
    // As for the client's own routes (clientLookup): the reverse proxy names the tenant.
    if (!tenantHeaderValue) {
      return { ok: false, status: 400, error: 'tenant_required', detail: `target "${plan.target.id}" needs the ${ctx.config.tenantHeader} header`, clearCookie: false };
    }
    if (tenantHeaderValue !== clientTenant) {
      return { ok: false, status: 404, error: 'unknown_tenant', detail: `target "${plan.target.id}" does not serve tenant "${tenantHeaderValue}"`, clearCookie: false };
    }
    tenant = clientTenant;
  }
  if (!cookieValue) return required ? loginRequired(false, 'this API needs a logged-in session') : ANONYMOUS;
  const session = await ctx.sessions.resolve(cookieValue, { clientId: plan.target.clientId, tenant });
  // A cookie that no longer resolves (expired, logged out, forged) is cleared.
  if (!session) return required ? loginRequired(true, 'the session has ended; log in again') : ANONYMOUS_CLEAR;
  let token: string;
  try {
    token = await ctx.sessions.accessToken(session);
  } catch (err) {
    if (err instanceof SessionEndedError) return required ? loginRequired(true, 'the session has ended; log in again') : ANONYMOUS_CLEAR;
    if (err instanceof RefreshUnavailableError) {
      return { ok: false, status: 503, error: 'idp_unavailable', detail: 'the identity provider could not be reached to refresh the access token; try again shortly', clearCookie: false };
    }
    throw err;
  }
  return { ok: true, token, session, clearCookie: false };
}
