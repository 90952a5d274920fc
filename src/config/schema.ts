/**
 * zod schemas for the structured parts of the config and proxy files: `clients`, `targets` and the
 * go-token-handler `proxies`. They check shape and types (unknown keys are errors naming the allowed
 * ones); the semantic checks (URLs, ids, mount paths) follow in clients.ts / targets.ts with the same
 * parsers the flags use.
 */
import * as z from 'zod';

/** A strict object whose unknown-key error lists the keys that are allowed there. */
function strict<Shape extends z.ZodRawShape>(shape: Shape) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown ${issue.keys.length === 1 ? 'key' : 'keys'} ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}; allowed: ${allowed}`
        : undefined,
  });
}

const stringList = z.union([z.string(), z.array(z.string())], { error: 'must be a string or a list of strings' });
/** A duration: Go-style text (`90s`, `1h30m`) or a number of seconds. */
const duration = z.union([z.string(), z.number().nonnegative()], { error: 'must be a duration like 90s or a number of seconds' });
const scalar = z.union([z.string(), z.number(), z.boolean()], { error: 'must be a string, number or boolean' });

/** The fields a client and each tenant of a multi-tenant client share: the IdP, credentials and URLs. */
const relyingPartyFields = {
  issuer: z.string().optional(),
  clientId: z.string().optional(),
  clientSecret: z.string().optional(),
  /** Read the secret from this environment variable (or token_handler.env entry). */
  clientSecretEnv: z.string().optional(),
  /** Read the secret from this file (trimmed); relative to the file that names it. */
  clientSecretFile: z.string().optional(),
  /** The client is registered at run time (POST /clients/{id}): no secret configured. */
  registered: z.boolean().optional(),
  scopes: stringList.optional(),
  /** ADSP's name for redirectUrl. */
  authCallbackUrl: z.string().optional(),
  redirectUrl: z.string().optional(),
  postLoginRedirectUrl: z.string().optional(),
  postLogoutRedirectUrl: z.string().optional(),
  failureRedirectUrl: z.string().optional(),
  extraAuthParams: z.record(z.string(), scalar).optional(),
  /** Claim paths holding the user's roles. */
  roleClaims: stringList.optional(),
  /** Read userinfo at login and refresh. */
  userinfo: z.boolean().optional(),
  /** Logout URL template for an IdP without end_session_endpoint. */
  endSessionUrl: z.string().optional(),
  /** private_key_jwt: the private key file (relative to the file that names it), its kid and certificate. */
  privateKeyFile: z.string().optional(),
  privateKeyId: z.string().optional(),
  certificateFile: z.string().optional(),
  /** Pushed Authorization Requests when the IdP offers them. */
  par: z.boolean().optional(),
  /** Entra ID multi-tenant: allowed `tid` values, or `*`. */
  allowedTids: stringList.optional(),
  /** The tenant's name, which the tenant header may give instead of the tenant (its URN). */
  tenantName: z.string().optional(),
};

/**
 * What one tenant of a multi-tenant client may set: its IdP and credentials and its URLs. Everything
 * else (allowed origins, disableVerifyHost, the admin policy) is the client's.
 */
export const tenantEntrySchema = strict(relyingPartyFields);
export type TenantEntry = z.infer<typeof tenantEntrySchema>;

export const clientEntrySchema = strict({
  id: z.string(),
  ...relyingPartyFields,
  allowedOrigins: stringList.optional(),
  tenant: z.string().optional(),
  disableVerifyHost: z.boolean().optional(),
  /** One client id serving several tenants, each with its own issuer and credentials (see docs/clients-and-tenants.md). */
  tenants: z.record(z.string(), tenantEntrySchema).optional(),
  /** The role a registration request's bearer token must carry (default token-handler-admin). */
  adminRole: z.string().optional(),
  /** Where in the token the role is looked for: a claim path or a list of them. */
  adminRoleClaim: stringList.optional(),
  /** When set, a registration request's bearer token must have this audience. */
  adminTokenAudience: z.string().optional(),
  /** How the browser continues to the IdP's end_session_endpoint at logout: a redirect (GET, default) or an auto-submitted form POST. */
  endSessionMethod: z.enum(['post', 'get']).optional(),
});
export type ClientEntry = z.infer<typeof clientEntrySchema>;

export const TOKEN_REQUIREMENTS = ['user', 'user-or-none', 'none'] as const;

export const targetEntrySchema = strict({
  id: z.string(),
  url: z.string(),
  mountPath: z.string().optional(),
  client: z.string().optional(),
  methods: stringList.optional(),
  tokenRequirement: z.enum(TOKEN_REQUIREMENTS).optional(),
  timeout: duration.optional(),
  headers: z.record(z.string(), z.string()).optional(),
  passSetCookie: z.boolean().optional(),
  /** Forward X-HTTP-Method-Override (and X-HTTP-Method, X-Method-Override), checked against `methods`. */
  allowMethodOverride: z.boolean().optional(),
  websocket: z.boolean().optional(),
  /** CSRF defence: `token` (XSRF header echoes the cookie) or `origin` (Sec-Fetch-Site / Origin); default --csrf_mode, else token. */
  csrf: z.enum(['token', 'origin']).optional(),
  /** Apply the CSRF check to every method, GET and HEAD too. */
  csrfAllMethods: z.boolean().optional(),
  /** Forward cross-site GET/HEAD navigations with the user's token (APIs serving links); default false. */
  allowCrossSiteGet: z.boolean().optional(),
  pool: strict({
    connections: z.number().int().positive().optional(),
    keepAliveTimeout: duration.optional(),
    keepAliveMaxTimeout: duration.optional(),
  }).optional(),
});
export type TargetEntry = z.infer<typeof targetEntrySchema>;

/**
 * go-token-handler's proxy entry, as-is. Its current parameter names are hyphenated; older releases
 * used camelCase (`idleConnTimeout`, `maxIdleConns`, `dialKeepAlive`, `dialTimeout`), accepted too.
 */
export const goProxyEntrySchema = strict({
  endpoint: z.string(),
  target: z.string(),
  parameters: strict({
    'idle-conn-timeout': duration.optional(),
    'max-idle-conns': z.number().int().positive().optional(),
    'keep-alive': duration.optional(),
    timeout: duration.optional(),
    idleConnTimeout: duration.optional(),
    maxIdleConns: z.number().int().positive().optional(),
    dialKeepAlive: duration.optional(),
    dialTimeout: duration.optional(),
    /** token-handler's own keys for Go entries: pass upstream Set-Cookie (default true, as Go did), the CSRF mode. */
    'pass-set-cookie': z.boolean().optional(),
    csrf: z.enum(['token', 'origin']).optional(),
    'allow-cross-site-get': z.boolean().optional(),
  })
    .nullable()
    .optional(),
});
export type GoProxyEntry = z.infer<typeof goProxyEntrySchema>;

/** The top level of a proxy file; its lists are validated entry by entry. */
export const proxyFileSchema = strict({
  proxies: z.unknown().optional(),
  targets: z.unknown().optional(),
});

/** Per-parse messages: "is required" rather than zod's "expected string, received undefined". */
const errorMap: z.core.$ZodErrorMap = (issue) => {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return 'is required';
    return `must be ${issue.expected === 'array' ? 'a list' : issue.expected === 'object' ? 'a mapping' : `a ${issue.expected}`}`;
  }
  if (issue.code === 'invalid_value') return `must be one of ${issue.values.map(String).join(', ')}`;
  if (issue.code === 'too_small' && issue.origin === 'number') return `must be ${issue.inclusive ? 'at least' : 'more than'} ${String(issue.minimum)}`;
  if (issue.code === 'too_small' && issue.origin === 'string') return 'must not be empty';
  return undefined;
};

/** `clients[1].issuer` style path under `prefix`. */
export function keyPath(prefix: string, path: readonly PropertyKey[]): string {
  let text = prefix;
  for (const part of path) text += typeof part === 'number' ? `[${part}]` : `.${String(part)}`;
  return text;
}

/** Validates `data` against `schema`, turning every issue into a located problem. */
export function validate<T>(schema: z.ZodType<T>, data: unknown, prefix: string): { value: T | undefined; problems: string[] } {
  const result = schema.safeParse(data, { error: errorMap });
  if (result.success) return { value: result.data, problems: [] };
  return { value: undefined, problems: result.error.issues.map((issue) => `${keyPath(prefix, issue.path)}: ${issue.message}`) };
}

/** Validates each element of a list on its own, so one bad entry does not hide the others. */
export function validateList<T>(schema: z.ZodType<T>, data: unknown, prefix: string): { items: { value: T; index: number }[]; problems: string[] } {
  if (data === undefined || data === null) return { items: [], problems: [] };
  if (!Array.isArray(data)) return { items: [], problems: [`${prefix}: must be a list`] };
  const items: { value: T; index: number }[] = [];
  const problems: string[] = [];
  data.forEach((entry: unknown, index) => {
    const result = validate(schema, entry, `${prefix}[${index}]`);
    problems.push(...result.problems);
    if (result.value !== undefined) items.push({ value: result.value, index });
  });
  return { items, problems };
}
