/**
 * The rules production mode adds (refusals) and the development-mode warnings that mirror them.
 * Client URL and `disableVerifyHost` rules are applied per client in clients.ts via
 * `insecureUrlProblem`, so each message can name the client field it is about.
 */
import { describeValue } from './resolve.ts';
import type { OptionSource } from './resolve.ts';
import type { OptionKey } from './options.ts';
import { optionTable } from './options.ts';
import type { Config } from './types.ts';

export const DEFAULT_AUTH_SECRET = optionTable.sessionAuthSecret.default;
export const MIN_PRODUCTION_AUTH_SECRET_BYTES = 32;

export interface SecuritySettings {
  config: Config;
  sources: Record<OptionKey, OptionSource>;
  /** Options already reported as invalid: not judged again. */
  invalid: ReadonlySet<OptionKey>;
}

/** An absolute `http:` URL where production wants https (paths are same-origin, hence fine). */
export function isInsecureUrl(value: string | undefined): boolean {
  return value !== undefined && /^http:\/\//i.test(value);
}

/**
 * An `http:` URL on a loopback host (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`): a development IdP on
 * this machine (a local Keycloak). Its traffic never leaves the machine, so outside production it needs no
 * --oidc_allow_insecure_issuer; production refuses it like any http URL.
 */
export function isLoopbackHttpUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:') return false;
  const host = url.hostname.toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function isDefaultAuthSecret(config: Config): boolean {
  const current = config.session.authSecrets[0];
  return current !== undefined && current.equals(Buffer.from(DEFAULT_AUTH_SECRET, 'utf8'));
}

/** Everything production refuses that is not per client. */
export function productionProblems({ config, sources, invalid }: SecuritySettings): string[] {
  const problems: string[] = [];
  const at = (key: OptionKey) => describeValue(key, undefined, sources[key]);
  const [auth, oldAuth] = config.session.authSecrets;
  if (invalid.has('sessionAuthSecret')) {
    // Already reported.
  } else if (isDefaultAuthSecret(config)) {
    problems.push(`${at('sessionAuthSecret')}: the built-in default is public, so anyone could forge session cookies; set SESSION_AUTH_SECRET to a random value of at least ${MIN_PRODUCTION_AUTH_SECRET_BYTES} bytes (production)`);
  } else if (auth !== undefined && auth.length < MIN_PRODUCTION_AUTH_SECRET_BYTES) {
    problems.push(`${at('sessionAuthSecret')}: must be at least ${MIN_PRODUCTION_AUTH_SECRET_BYTES} bytes in production, got ${auth.length}`);
  }
  if (oldAuth !== undefined && oldAuth.length < MIN_PRODUCTION_AUTH_SECRET_BYTES) {
    problems.push(`${at('sessionOldAuthSecret')}: must be at least ${MIN_PRODUCTION_AUTH_SECRET_BYTES} bytes in production, got ${oldAuth.length}`);
  }
  if (config.session.encSecrets.length === 0 && !invalid.has('sessionEncSecret')) {
    problems.push('--session_enc_secret (SESSION_ENC_SECRET) is required in production: the session cookie encryption key');
  }
  if (config.session.dbKeys.length === 0 && !invalid.has('sessionDbKey')) {
    problems.push('--session_db_key (SESSION_DB_KEY) is required in production: the encryption key for tokens stored in the session database');
  }
  if (sources.cookieSecure.kind !== 'default' && config.cookie.secure === false) {
    problems.push(`${describeValue('cookieSecure', 'false', sources.cookieSecure)}: production requires Secure cookies; remove the setting or use true/auto`);
  }
  if (config.oidc.allowInsecureIssuer) {
    problems.push(`${describeValue('oidcAllowInsecureIssuer', 'true', sources.oidcAllowInsecureIssuer)}: development only, refused in production`);
  }
  if (isInsecureUrl(config.publicUrl)) {
    problems.push(`${describeValue('publicUrl', config.publicUrl, sources.publicUrl)}: must be https in production`);
  }
  return problems;
}

/** Development mode: what production would refuse, said once, loudly, by main.ts. */
export function developmentWarnings({ config }: SecuritySettings): string[] {
  const warnings: string[] = [];
  if (isDefaultAuthSecret(config)) {
    warnings.push('using the default SESSION_AUTH_SECRET: anyone can forge session cookies; set SESSION_AUTH_SECRET (refused in production)');
  }
  if (config.session.encSecrets.length === 0) {
    warnings.push('SESSION_ENC_SECRET is not set: the cookie encryption key is derived from SESSION_AUTH_SECRET; set SESSION_ENC_SECRET (required in production)');
  }
  if (config.session.dbKeys.length === 0) {
    warnings.push('SESSION_DB_KEY is not set: set a dedicated key for the tokens stored in the session database (required in production)');
  }
  if (config.oidc.allowInsecureIssuer) {
    warnings.push('OIDC_ALLOW_INSECURE_ISSUER is on: http:// issuers are accepted (development only, refused in production)');
  }
  return warnings;
}
