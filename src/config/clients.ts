/**
 * OIDC clients: the `default` client from the `--oidc_*` options (merged over a config-file entry
 * with id `default`, flags winning), plus the config file's other `clients`. Every field is checked
 * with the parsers the flags use, and problems name the field and where it came from.
 */
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { errorCode } from './files.ts';
import type { OptionKey, OptionValues } from './options.ts';
import { InvalidValue, parseHttpUrl, parseOrigin, parseRedirectTarget, parseScopes, splitList } from './parsers.ts';
import { loadClientKey } from './clientKey.ts';
import { checkAuthParam, parseClaimPath, parseClaimPathList, parseEndSessionTemplate, parseTidList } from './oidcParsers.ts';

export { parseClaimPath } from './oidcParsers.ts';
import { isInsecureUrl, isLoopbackHttpUrl } from './production.ts';
import { describeValue } from './resolve.ts';
import type { OptionSource } from './resolve.ts';
import type { ClientEntry } from './schema.ts';
import type { AdminTokenPolicy, ClientConfig } from './types.ts';

export const DEFAULT_CLIENT_ID = 'default';
export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SECRET_FIELDS = ['clientSecret', 'clientSecretEnv', 'clientSecretFile', 'registered', 'privateKeyFile', 'privateKeyId', 'certificateFile'] as const;

export interface ClientsInput {
  values: OptionValues;
  sources: Record<OptionKey, OptionSource>;
  /** Validated config-file entries with their index in `clients`. */
  entries: { value: ClientEntry; index: number }[];
  /** `config file clients` */
  prefix: string;
  /** Directory against which a relative `clientSecretFile` is resolved. */
  baseDir: string;
  /** The environment, then token_handler.env: for `clientSecretEnv`. */
  lookupEnv: (name: string) => string | undefined;
}

export interface ClientsResult {
  clients: ClientConfig[];
  /** Every client id defined, also those whose definition has problems (reported once, not again where used). */
  declaredIds: string[];
  problems: string[];
  warnings: string[];
}

/** A field value with the text that introduces it in messages. */
interface Sourced<T> {
  value: T;
  /** e.g. `--oidc_issuer "http://x" (from env OIDC_ISSUER)` or `config file clients[1].issuer "http://x"`. */
  where: string;
}

export function buildClients(input: ClientsInput): ClientsResult {
  const { values, entries, prefix } = input;
  const result: ClientsResult = { clients: [], declaredIds: [], problems: [], warnings: [] };
  const seen = new Map<string, string>();

  const fileDefault = entries.find((entry) => entry.value.id === DEFAULT_CLIENT_ID);
  // --oidc_scopes is also the default scopes of config-file clients: with those, it needs no issuer of its own.
  const explicitOidc = (['oidcClientId', 'oidcClientSecret', 'oidcRedirectUrl', 'oidcPostLoginRedirectUrl', 'oidcPostLogoutRedirectUrl', 'oidcFailureRedirectUrl', 'oidcScopes'] as const).filter(
    (key) => input.sources[key].kind !== 'default' && !(key === 'oidcScopes' && entries.length > 0),
  );
  if (fileDefault?.value.tenants !== undefined) {
    result.problems.push(`${prefix}[${fileDefault.index}].tenants: the default client cannot serve several tenants; give the multi-tenant client an id of its own`);
    seen.set(DEFAULT_CLIENT_ID, `${prefix}[${fileDefault.index}]`);
  } else if (values.oidcIssuer !== undefined || fileDefault !== undefined) {
    const client = buildClient(input, fileDefault, true, result);
    if (client) result.clients.push(client);
    seen.set(DEFAULT_CLIENT_ID, fileDefault ? `${prefix}[${fileDefault.index}]` : 'the --oidc_* options');
  } else if (explicitOidc.length > 0) {
    result.problems.push(
      `${explicitOidc.map((key) => describeValue(key, undefined, input.sources[key])).join(', ')}: set --oidc_issuer (OIDC_ISSUER) too, or define the "default" client in the config file`,
    );
  }

  for (const entry of entries) {
    const id = entry.value.id;
    const where = `${prefix}[${entry.index}].id`;
    if (!ID_PATTERN.test(id)) {
      result.problems.push(`${where} ${JSON.stringify(id)}: must be 1-64 characters of A-Z a-z 0-9 . _ -`);
      continue;
    }
    if (id === DEFAULT_CLIENT_ID) continue;
    const previous = seen.get(id);
    if (previous !== undefined) {
      result.problems.push(`${where} ${JSON.stringify(id)}: duplicate client id (also ${previous})`);
      continue;
    }
    seen.set(id, `${prefix}[${entry.index}]`);
    const client = entry.value.tenants === undefined ? buildClient(input, entry, false, result) : buildTenantClient(input, entry, result);
    if (client) result.clients.push(client);
  }
  if (result.clients.length === 0 && result.problems.length === 0) {
    result.warnings.push('no OIDC client configured: set --oidc_issuer, --oidc_client_id and --oidc_client_secret, or define clients in the --config file; logins are disabled');
  }
  // A tenant inherits the client's fields, so a problem (or warning) with one of them is found once per tenant.
  result.problems = [...new Set(result.problems)];
  result.warnings = [...new Set(result.warnings)];
  result.declaredIds = [...seen.keys()];
  return result;
}

/**
 * A client with `tenants`: the client's own fields are shared defaults (issuer, clientId and secret are
 * optional there), and each tenant's entry is merged over them and checked as a complete client whose
 * `tenant` is its key. A tenant that sets any of clientSecret / clientSecretEnv / clientSecretFile /
 * registered inherits none of them, and one that sets a callback URL inherits neither spelling.
 */
function buildTenantClient(input: ClientsInput, entry: { value: ClientEntry; index: number }, result: ClientsResult): ClientConfig | undefined {
  const { tenants: tenantEntries = {}, tenantName: sharedName, ...shared } = entry.value;
  const at = `${input.prefix}[${entry.index}]`;
  const problemsBefore = result.problems.length;
  if (sharedName !== undefined) result.problems.push(`${at}.tenantName: a name names one tenant; set it in that tenant's entry of tenants`);
  if (shared.tenant !== undefined) result.problems.push(`${at}: set tenant (one tenant) or tenants (several), not both`);
  const keys = Object.keys(tenantEntries);
  if (keys.length === 0) result.problems.push(`${at}.tenants: must name at least one tenant`);
  const base = buildClient(input, { value: shared, index: entry.index }, false, result, { lenient: true });
  const tenants: Record<string, ClientConfig> = {};
  for (const key of keys) {
    const tenantAt = `${at}.tenants[${JSON.stringify(key)}]`;
    if (!isValidTenant(key)) {
      result.problems.push(`${tenantAt}: a tenant must be a non-empty value without whitespace`);
      continue;
    }
    const own = tenantEntries[key] ?? {};
    const inherited: Partial<ClientEntry> = { ...shared };
    if (SECRET_FIELDS.some((field) => own[field] !== undefined)) for (const field of SECRET_FIELDS) delete inherited[field];
    if (own.authCallbackUrl !== undefined || own.redirectUrl !== undefined) {
      delete inherited.authCallbackUrl;
      delete inherited.redirectUrl;
    }
    const merged: ClientEntry = { ...inherited, ...own, id: shared.id, tenant: key };
    const fieldAt = (field: string): string => (field in own ? `${tenantAt}.${field}` : `${at}.${field}`);
    const built = buildClient(input, { value: merged, index: entry.index }, false, result, {
      at: tenantAt,
      fieldAt,
      name: `client ${JSON.stringify(shared.id)} tenant ${JSON.stringify(key)}`,
    });
    if (built) tenants[key] = built;
  }
  if (result.problems.length > problemsBefore || base === undefined) return undefined;
  return { ...base, tenants };
}

function isValidTenant(value: string): boolean {
  return value.trim() !== '' && !/\s/.test(value) && !hasControlCharacter(value);
}

interface BuildOptions {
  /** Where the entry is, for messages (default `<prefix>[<index>]`). */
  at?: string;
  /** Where a field is, for messages (default `<at>.<field>`): a tenant's inherited fields are the client's. */
  fieldAt?: (field: string) => string;
  /** `client "x"` unless given. */
  name?: string;
  /** The shared part of a multi-tenant client: issuer, clientId and a secret are not required. */
  lenient?: boolean;
}

function buildClient(
  input: ClientsInput,
  entry: { value: ClientEntry; index: number } | undefined,
  isDefault: boolean,
  result: ClientsResult,
  opts: BuildOptions = {},
): ClientConfig | undefined {
  const { values, sources, prefix } = input;
  const file = entry?.value;
  const at = opts.at ?? `${prefix}[${entry?.index ?? 0}]`;
  const fieldAt = opts.fieldAt ?? ((field: string) => `${at}.${field}`);
  const problemsBefore = result.problems.length;
  const problem = (text: string) => result.problems.push(text);
  const isProduction = values.isProduction;
  const id = isDefault ? DEFAULT_CLIENT_ID : (file?.id ?? '');
  const name = opts.name ?? `client ${JSON.stringify(id)}`;
  const registered = file?.registered === true;

  /** The explicitly set option wins over the file; an option's own default comes last. */
  const pick = <T>(key: OptionKey, optionValue: T | undefined, fileField: keyof ClientEntry, fileValue: T | undefined): Sourced<T> | undefined => {
    const source = sources[key];
    const fromOption = (): Sourced<T> | undefined =>
      optionValue === undefined ? undefined : { value: optionValue, where: describeValue(key, typeof optionValue === 'string' ? optionValue : undefined, source) };
    if (isDefault && source.kind !== 'default') return fromOption();
    if (fileValue !== undefined) return { value: fileValue, where: `${fieldAt(fileField)}${typeof fileValue === 'string' ? ` ${JSON.stringify(fileValue)}` : ''}` };
    return isDefault || key === 'oidcScopes' ? fromOption() : undefined;
  };
  const check = <T>(field: Sourced<string> | undefined, parse: (raw: string) => T): T | undefined => {
    if (field === undefined) return undefined;
    try {
      return parse(field.value);
    } catch (error) {
      if (!(error instanceof InvalidValue)) throw error;
      problem(`${field.where}: ${error.message}`);
      return undefined;
    }
  };

  // Issuer: https, or http only where development explicitly allows it.
  const issuerField = pick('oidcIssuer', values.oidcIssuer, 'issuer', file?.issuer);
  const issuer = check(issuerField, (raw) => parseHttpUrl(raw));
  if (issuerField === undefined) {
    if (!opts.lenient) problem(`${name}: issuer is required (${isDefault ? '--oidc_issuer / OIDC_ISSUER' : fieldAt('issuer')})`);
  }
  else if (issuer !== undefined && isInsecureUrl(issuer)) {
    if (isProduction) problem(`${issuerField.where}: the issuer must be https in production`);
    else if (values.oidcAllowInsecureIssuer) {
      // Accepted; developmentWarnings says so once for all issuers.
    } else if (isLoopbackHttpUrl(issuer)) {
      result.warnings.push(`${issuerField.where}: an http:// issuer on this machine, accepted outside production (development only; refused in production)`);
    } else problem(`${issuerField.where}: an http:// issuer needs --oidc_allow_insecure_issuer (development only; an issuer on a loopback host such as localhost needs nothing)`);
  }

  const clientIdField = pick('oidcClientId', values.oidcClientId, 'clientId', file?.clientId);
  // A registered client's client_id is assigned by the IdP at registration.
  if ((clientIdField === undefined || clientIdField.value.trim() === '') && !registered && !opts.lenient) {
    problem(`${name}: clientId is required (${isDefault ? '--oidc_client_id / OIDC_CLIENT_ID' : fieldAt('clientId')}), unless the client is registered: true`);
  }

  const keyConfigured = file?.privateKeyFile !== undefined || (isDefault && values.oidcPrivateKeyFile !== undefined);
  const clientSecret = resolveSecret(input, entry, isDefault, name, problem, { at, fieldAt, lenient: opts.lenient === true || keyConfigured });
  if (keyConfigured && clientSecret !== undefined) problem(`${name}: set a client secret or a private key (private_key_jwt), not both`);

  const redirectField = pick('oidcRedirectUrl', values.oidcRedirectUrl, file?.redirectUrl !== undefined ? 'redirectUrl' : 'authCallbackUrl', file?.redirectUrl ?? file?.authCallbackUrl);
  if (file?.redirectUrl !== undefined && file.authCallbackUrl !== undefined) problem(`${fieldAt('redirectUrl')}: set redirectUrl or authCallbackUrl (the same setting), not both`);
  const redirectUrl = check(redirectField, (raw) => parseHttpUrl(raw));

  const postLogin = pick('oidcPostLoginRedirectUrl', values.oidcPostLoginRedirectUrl, 'postLoginRedirectUrl', file?.postLoginRedirectUrl);
  const postLoginRedirectUrl = check(postLogin, parseRedirectTarget) ?? '/';
  const postLogout = pick('oidcPostLogoutRedirectUrl', values.oidcPostLogoutRedirectUrl, 'postLogoutRedirectUrl', file?.postLogoutRedirectUrl);
  const postLogoutRedirectUrl = check(postLogout, parseRedirectTarget);
  const failure = pick('oidcFailureRedirectUrl', values.oidcFailureRedirectUrl, 'failureRedirectUrl', file?.failureRedirectUrl);
  const failureRedirectUrl = check(failure, parseRedirectTarget);
  if (isProduction) {
    for (const [field, value] of [[redirectField, redirectUrl], [postLogin, postLoginRedirectUrl], [postLogout, postLogoutRedirectUrl], [failure, failureRedirectUrl]] as const) {
      if (field !== undefined && isInsecureUrl(value)) problem(`${field.where}: must be https in production`);
    }
  }

  const scopesField = pick('oidcScopes', values.oidcScopes.join(' '), 'scopes', file?.scopes === undefined ? undefined : listText(file.scopes));
  const scopes = check(scopesField, parseScopes) ?? values.oidcScopes;

  const allowedOrigins = [...(values.allowedOrigins ?? [])];
  (typeof file?.allowedOrigins === 'string' ? splitList(file.allowedOrigins) : (file?.allowedOrigins ?? [])).forEach((origin, i) => {
    const origins = check({ value: origin, where: `${fieldAt('allowedOrigins')}[${i}] ${JSON.stringify(origin)}` }, parseOrigin);
    if (origins !== undefined && !allowedOrigins.includes(origins)) allowedOrigins.push(origins);
  });

  const extraAuthParams: Record<string, string> = {};
  for (const [key, value] of Object.entries(file?.extraAuthParams ?? {})) {
    try {
      checkAuthParam(key);
      extraAuthParams[key] = String(value);
    } catch (error) {
      if (!(error instanceof InvalidValue)) throw error;
      problem(`${fieldAt('extraAuthParams')}.${key}: is set by the token handler itself and cannot be overridden`);
    }
  }
  // The flag's parameters win, one by one, over the default entry's.
  if (isDefault && values.oidcAuthParams !== undefined) Object.assign(extraAuthParams, values.oidcAuthParams);

  const oidc = oidcSettings(input, file, isDefault, fieldAt, problem, registered);

  const tenant = file?.tenant?.trim();
  if (file?.tenant !== undefined && !isValidTenant(file.tenant)) problem(`${fieldAt('tenant')}: must be a non-empty value without whitespace`);
  const tenantName = file?.tenantName?.trim();
  if (file?.tenantName !== undefined) {
    if (!isValidTenant(file.tenantName)) problem(`${fieldAt('tenantName')}: must be a non-empty value without whitespace`);
    else if (tenant === undefined) problem(`${fieldAt('tenantName')}: names a tenant; set tenant (or use tenants) too`);
  }

  const admin = adminPolicy(file, fieldAt, problem);
  const endSessionMethod = pick('oidcEndSessionMethod', values.oidcEndSessionMethod, 'endSessionMethod', file?.endSessionMethod)?.value;

  const disableVerifyHost = file?.disableVerifyHost ?? false;
  if (disableVerifyHost) {
    if (isProduction) problem(`${fieldAt('disableVerifyHost')}: development only, refused in production`);
    else result.warnings.push(`${name} has disableVerifyHost: the request host is not checked against its redirect URL (development only)`);
  }

  if (result.problems.length > problemsBefore) return undefined;
  return {
    id,
    issuer: issuer ?? '',
    clientId: clientIdField?.value.trim() ?? '',
    ...(clientSecret !== undefined && { clientSecret }),
    scopes,
    ...(redirectUrl !== undefined && { redirectUrl }),
    postLoginRedirectUrl,
    ...(postLogoutRedirectUrl !== undefined && { postLogoutRedirectUrl }),
    ...(failureRedirectUrl !== undefined && { failureRedirectUrl }),
    allowedOrigins,
    extraAuthParams,
    ...(tenant !== undefined && tenant !== '' && { tenant }),
    ...(tenantName !== undefined && tenantName !== '' && tenant !== undefined && { tenantName }),
    disableVerifyHost,
    ...(registered && { registered: true }),
    ...(admin !== undefined && { admin }),
    ...(endSessionMethod === 'post' && { endSessionMethod }),
    ...oidc,
  };
}

type OidcSettings = Pick<ClientConfig, 'roleClaims' | 'userinfo' | 'endSessionUrl' | 'clientKey' | 'par' | 'allowedTids'>;

/**
 * roleClaims, userinfo, endSessionUrl, the private key, par and allowedTids: from the entry, or for the
 * `default` client from the `oidc_*` options, an explicitly set option winning over the entry's field.
 */
function oidcSettings(
  input: ClientsInput,
  file: ClientEntry | undefined,
  isDefault: boolean,
  fieldAt: (field: string) => string,
  problem: (text: string) => void,
  registered: boolean,
): OidcSettings {
  const { values, sources } = input;
  const explicit = (key: OptionKey): boolean => isDefault && sources[key].kind !== 'default';
  const parsed = <T>(field: keyof ClientEntry, raw: string | string[] | undefined, parse: (text: string) => T): T | undefined => {
    if (raw === undefined) return undefined;
    try {
      return parse(Array.isArray(raw) ? raw.join(',') : raw);
    } catch (error) {
      if (!(error instanceof InvalidValue)) throw error;
      problem(`${fieldAt(field)}: ${error.message}`);
      return undefined;
    }
  };
  const settings: OidcSettings = {};

  const roleClaims = explicit('oidcRoleClaims')
    ? values.oidcRoleClaims
    : Array.isArray(file?.roleClaims)
      ? file.roleClaims.map((path, i) => parsed(`roleClaims[${i}]` as keyof ClientEntry, path, parseClaimPath)).filter((path) => path !== undefined)
      : parsed('roleClaims', file?.roleClaims, parseClaimPathList);
  if (roleClaims !== undefined) {
    if (roleClaims.length === 0) problem(`${fieldAt('roleClaims')}: must name at least one claim path`);
    else settings.roleClaims = roleClaims;
  }

  const userinfo = explicit('oidcUserinfo') ? values.oidcUserinfo : file?.userinfo;
  if (userinfo === true) settings.userinfo = true;
  const par = explicit('oidcPar') ? values.oidcPar : file?.par;
  if (par === true) settings.par = true;

  const endSessionUrl = explicit('oidcEndSessionUrl') ? values.oidcEndSessionUrl : parsed('endSessionUrl', file?.endSessionUrl, parseEndSessionTemplate);
  if (endSessionUrl !== undefined) {
    if (values.isProduction && isInsecureUrl(endSessionUrl)) problem(`${fieldAt('endSessionUrl')}: must be https in production`);
    else settings.endSessionUrl = endSessionUrl;
  }

  const allowedTids = explicit('oidcAllowedTids') ? values.oidcAllowedTids : parsed('allowedTids', file?.allowedTids, parseTidList);
  if (allowedTids !== undefined) settings.allowedTids = allowedTids;

  // The key file: a flag's path is resolved against the working directory, a config file's against its directory.
  const keyFile = explicit('oidcPrivateKeyFile') ? values.oidcPrivateKeyFile : file?.privateKeyFile === undefined ? undefined : resolvePath(input.baseDir, file.privateKeyFile);
  const kid = explicit('oidcPrivateKeyId') ? values.oidcPrivateKeyId : file?.privateKeyId;
  const certificate = explicit('oidcCertificateFile') ? values.oidcCertificateFile : file?.certificateFile === undefined ? undefined : resolvePath(input.baseDir, file.certificateFile);
  if (keyFile !== undefined) {
    const where = explicit('oidcPrivateKeyFile') ? describeValue('oidcPrivateKeyFile', keyFile, sources.oidcPrivateKeyFile) : `${fieldAt('privateKeyFile')} ${JSON.stringify(keyFile)}`;
    if (registered) problem(`${where}: a registered: true client gets a secret at registration; remove the private key`);
    else {
      try {
        settings.clientKey = loadClientKey(keyFile, { ...(kid !== undefined && { kid }), ...(certificate !== undefined && { certificateFile: certificate }) });
      } catch (error) {
        if (!(error instanceof InvalidValue)) throw error;
        problem(`${where}: ${error.message}`);
      }
    }
  } else if (kid !== undefined || certificate !== undefined) {
    problem(`${fieldAt(kid !== undefined ? 'privateKeyId' : 'certificateFile')}: needs privateKeyFile${isDefault ? ' (--oidc_private_key_file)' : ''}`);
  }
  return settings;
}

/** adminRole / adminRoleClaim / adminTokenAudience, or undefined when none is set (the defaults apply). */
function adminPolicy(file: ClientEntry | undefined, fieldAt: (field: string) => string, problem: (text: string) => void): AdminTokenPolicy | undefined {
  if (file?.adminRole === undefined && file?.adminRoleClaim === undefined && file?.adminTokenAudience === undefined) return undefined;
  const policy: AdminTokenPolicy = {};
  if (file.adminRole !== undefined) {
    const role = file.adminRole.trim();
    if (role === '' || hasControlCharacter(role)) problem(`${fieldAt('adminRole')}: must be a non-empty role name`);
    else policy.role = role;
  }
  if (file.adminRoleClaim !== undefined) {
    const paths = typeof file.adminRoleClaim === 'string' ? splitList(file.adminRoleClaim) : file.adminRoleClaim;
    const parsed: string[][] = [];
    paths.forEach((path, i) => {
      try {
        parsed.push(parseClaimPath(path));
      } catch (error) {
        if (!(error instanceof InvalidValue)) throw error;
        problem(`${fieldAt('adminRoleClaim')}${typeof file.adminRoleClaim === 'string' ? '' : `[${i}]`} ${JSON.stringify(path)}: ${error.message}`);
      }
    });
    if (paths.length === 0) problem(`${fieldAt('adminRoleClaim')}: must name at least one claim path`);
    else policy.roleClaimPaths = parsed;
  }
  if (file.adminTokenAudience !== undefined) {
    const audience = file.adminTokenAudience.trim();
    if (audience === '') problem(`${fieldAt('adminTokenAudience')}: must not be empty`);
    else policy.audience = audience;
  }
  return policy;
}

function listText(value: string | string[]): string {
  return typeof value === 'string' ? value : value.join(' ');
}

/** clientSecret / clientSecretEnv / clientSecretFile / --oidc_client_secret, or none when `registered: true`. */
function resolveSecret(
  input: ClientsInput,
  entry: { value: ClientEntry; index: number } | undefined,
  isDefault: boolean,
  name: string,
  problem: (text: string) => void,
  where: { at: string; fieldAt: (field: string) => string; lenient: boolean },
): string | undefined {
  const file = entry?.value;
  const { at, fieldAt } = where;
  const flagSecret = isDefault && input.sources.oidcClientSecret.kind !== 'default' ? input.values.oidcClientSecret : undefined;
  const ways = (['clientSecret', 'clientSecretEnv', 'clientSecretFile'] as const).filter((key) => file?.[key] !== undefined);
  if (ways.length > 1) {
    problem(`${at}: set only one of ${ways.join(', ')}`);
    return undefined;
  }
  let secret = flagSecret;
  if (secret === undefined && file?.clientSecret !== undefined) {
    secret = file.clientSecret.trim();
    if (secret === '') problem(`${fieldAt('clientSecret')}: must not be empty`);
  }
  if (secret === undefined && file?.clientSecretEnv !== undefined) {
    secret = input.lookupEnv(file.clientSecretEnv)?.trim();
    if (secret === undefined || secret === '') problem(`${fieldAt('clientSecretEnv')}: environment variable ${JSON.stringify(file.clientSecretEnv)} is not set`);
  }
  if (secret === undefined && file?.clientSecretFile !== undefined) {
    const path = resolvePath(input.baseDir, file.clientSecretFile);
    try {
      secret = readFileSync(path, 'utf8').trim();
      if (secret === '') problem(`${fieldAt('clientSecretFile')} ${JSON.stringify(path)}: the file is empty`);
    } catch (error) {
      problem(`${fieldAt('clientSecretFile')} ${JSON.stringify(path)}: cannot be read (${errorCode(error)})`);
    }
  }
  if (file?.registered === true) {
    if (secret !== undefined) problem(`${name}: registered: true means the secret comes from registration at run time; remove the configured secret`);
    return undefined;
  }
  if (secret === undefined && ways.length === 0 && !where.lenient) {
    problem(
      isDefault
        ? `${name}: --oidc_client_secret (OIDC_CLIENT_SECRET) is required, unless the client authenticates with a private key (--oidc_private_key_file) or the config file marks it registered: true`
        : `${at}: clientSecret, clientSecretEnv or clientSecretFile is required, unless the client authenticates with a private key (privateKeyFile) or is registered: true`,
    );
  }
  return secret === '' ? undefined : secret;
}

function hasControlCharacter(value: string): boolean {
  return [...value].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f);
}
