/**
 * loadConfig: flags + environment + token_handler.env + config file + defaults → one validated
 * Config, or a ConfigError listing every problem. Pure apart from reading the files it is pointed
 * at: `main.ts` passes argv, env and cwd in.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { buildClients } from './clients.ts';
import { parseArgv } from './cli.ts';
import { ConfigError } from './errors.ts';
import { isSocketAddress } from './parsers.ts';
import { ENV_FILE_NAME, readDataFile, readEnvFile, splitConfigFile } from './files.ts';
import type { ConfigFileContent } from './files.ts';
import { goProxyToTarget } from './goProxyFile.ts';
import { optionDef, optionKeys } from './options.ts';
import type { OptionKey, OptionValues } from './options.ts';
import { developmentWarnings, productionProblems } from './production.ts';
import { describeValue, pickRaw, resolveOptions } from './resolve.ts';
import type { OptionSource } from './resolve.ts';
import { clientEntrySchema, goProxyEntrySchema, proxyFileSchema, targetEntrySchema, validate, validateList } from './schema.ts';
import { buildTargets } from './targets.ts';
import type { TargetSource } from './targets.ts';
import type { Config } from './types.ts';

export interface LoadConfigInput {
  /** The arguments after the script: `process.argv.slice(2)`. */
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Where `token_handler.env` is looked for and relative paths are resolved. */
  cwd: string;
}

export interface LoadedConfig {
  config: Config;
  /** Development-mode security warnings and other non-fatal findings: log each once, loudly. */
  warnings: string[];
  /** The files read (the config file, the proxy file): a reload reads them again (src/ops/reload.ts). */
  files: string[];
}

const CONFIG_FILE = 'config file';
const PROXY_FILE = 'proxy file';

/** @throws ConfigError with every problem found. `--help`/`--version` are ignored here (see `helpOrVersion`). */
export function loadConfig({ argv, env, cwd }: LoadConfigInput): LoadedConfig {
  const problems: string[] = [];
  const warnings: string[] = [];

  const args = parseArgv(argv);
  problems.push(...args.problems);
  const envFile = readEnvFile(cwd);
  problems.push(...envFile.problems);

  // The config file is named by flag, environment or env file (never by itself).
  const configRaw = pickRaw('config', { flags: args.values, env, envFile: envFile.entries, configFile: new Map() });
  let configFile: ConfigFileContent = { options: new Map(), clients: undefined, targets: undefined, proxies: undefined, problems: [] };
  let configFileDir: string | undefined;
  const files: string[] = [];
  if (configRaw !== undefined && configRaw.raw.trim() !== '') {
    const path = resolvePath(cwd, configRaw.raw.trim());
    configFileDir = dirname(path);
    files.push(path);
    const { data, problems: readProblems } = readDataFile(path, CONFIG_FILE);
    problems.push(...readProblems);
    configFile = splitConfigFile(data, CONFIG_FILE);
    problems.push(...configFile.problems);
  }

  const { values, sources, invalid, problems: optionProblems } = resolveOptions({
    flags: args.values,
    env,
    envFile: envFile.entries,
    configFile: configFile.options,
    configFileDir,
    cwd,
  });
  problems.push(...optionProblems);

  // Clients
  const clientEntries = validateList(clientEntrySchema, configFile.clients, `${CONFIG_FILE} clients`);
  problems.push(...clientEntries.problems);
  const secretEnvNames = new Set(clientEntries.items.map((item) => item.value.clientSecretEnv).filter((name) => name !== undefined));
  const clients = buildClients({
    values,
    sources,
    entries: clientEntries.items,
    prefix: `${CONFIG_FILE} clients`,
    baseDir: configFileDir ?? cwd,
    lookupEnv: (name) => (env[name] !== undefined && env[name] !== '' ? env[name] : envFile.entries.get(name)?.value),
  });
  problems.push(...clients.problems);
  warnings.push(...clients.warnings);

  // Targets, from the config file and the proxy file
  const targetSources: TargetSource[] = [...collectTargets(configFile.targets, configFile.proxies, CONFIG_FILE, problems)];
  if (values.proxyConfig !== undefined) {
    files.push(values.proxyConfig);
    const { data, problems: readProblems } = readDataFile(values.proxyConfig, PROXY_FILE);
    problems.push(...readProblems);
    if (readProblems.length === 0) {
      const top = validate(proxyFileSchema, data ?? {}, PROXY_FILE);
      problems.push(...top.problems);
      if (top.value !== undefined) targetSources.push(...collectTargets(top.value.targets, top.value.proxies, PROXY_FILE, problems));
    }
  }
  const targets = buildTargets(targetSources, {
    ...(values.csrfMode !== undefined && { csrfMode: values.csrfMode }),
    basePath: values.basePath,
    legacyRoutes: values.legacyRoutes,
    // A target of a client whose definition has problems is not "unknown": that client's problems say why.
    clientIds: new Set([...clients.clients.map((client) => client.id), ...clients.declaredIds]),
    directory: values.directoryUrl !== undefined,
  });
  problems.push(...targets.problems);

  problems.push(...crossChecks(values, sources));
  warnings.push(...commandLineSecretWarnings(args.values.keys()));
  warnings.push(...unknownEnvFileWarnings(envFile.entries, secretEnvNames));

  const config = assemble(values, sources);
  config.clients = clients.clients;
  config.targets = targets.targets;
  if (values.directoryUrl !== undefined) {
    // Files named in the config file are relative to it, as every other path there.
    const base = sources.directoryUrl.kind === 'configFile' && configFileDir !== undefined ? configFileDir : cwd;
    config.directory = {
      sources: values.directoryUrl.map((source) => (/^https?:\/\//i.test(source) ? source : resolvePath(base, source))),
      refreshMs: values.directoryRefresh,
    };
  }

  if (values.isProduction) {
    problems.push(...productionProblems({ config, sources, invalid }));
    // Production cookies are always Secure (`false` was refused just above).
    config.cookie.secure = true;
  } else warnings.unshift(...developmentWarnings({ config, sources, invalid }));

  if (problems.length > 0) throw new ConfigError(problems);
  return { config, warnings, files };
}

function collectTargets(targets: unknown, proxies: unknown, label: string, problems: string[]): TargetSource[] {
  const ours = validateList(targetEntrySchema, targets, `${label} targets`);
  const go = validateList(goProxyEntrySchema, proxies, `${label} proxies`);
  problems.push(...ours.problems, ...go.problems);
  return [
    ...ours.items.map(({ value, index }) => ({ entry: value, at: `${label} targets[${index}]`, derivedId: false, fields: {} })),
    ...go.items.map(({ value, index }) => goProxyToTarget(value, `${label} proxies[${index}]`)),
  ];
}

function assemble(values: OptionValues, sources: Record<OptionKey, OptionSource>): Config {
  const authSecrets = values.sessionOldAuthSecret ? [values.sessionAuthSecret, values.sessionOldAuthSecret] : [values.sessionAuthSecret];
  const secrets = (current: Buffer | undefined, old: Buffer | undefined) => (current === undefined ? [] : old === undefined ? [current] : [current, old]);
  // go-token-handler named the SQLite file with DB_NAME; honour that unless db_path is set.
  const sqliteFromName = values.dbType === 'sqlite' && sources.dbPath.kind === 'default' && values.dbName !== undefined;
  return {
    isProduction: values.isProduction,
    logLevel: values.logLevel,
    listen: values.listenAddr,
    workers: values.workers,
    ...(values.metricsListenAddr !== undefined && { metricsListen: values.metricsListenAddr }),
    ...(values.forwardAuthListenAddr !== undefined && { forwardAuthListen: values.forwardAuthListenAddr }),
    ...(values.forwardAuthAllow !== undefined && { forwardAuthAllow: values.forwardAuthAllow }),
    ...(values.forwardAuthListenAddr !== undefined && isSocketAddress(values.forwardAuthListenAddr) && { forwardAuthSocketMode: values.forwardAuthSocketMode }),
    basePath: values.basePath,
    ...(values.publicUrl !== undefined && { publicUrl: values.publicUrl }),
    trustProxy: values.trustProxy,
    ...(values.tlsCert !== undefined && values.tlsKey !== undefined && { tls: { certFile: values.tlsCert, keyFile: values.tlsKey } }),
    cookie: {
      name: values.cookieName,
      ...(values.cookieDomain !== undefined && { domain: values.cookieDomain }),
      sameSite: values.cookieSameSite,
      secure: values.cookieSecure,
    },
    csrf: { cookieName: values.csrfCookieName, headerName: values.csrfHeaderName, ...(values.csrfMode !== undefined && { mode: values.csrfMode }) },
    tenantHeader: values.tenantHeader,
    session: {
      authSecrets: authSecrets.filter((secret) => secret !== undefined),
      encSecrets: secrets(values.sessionEncSecret, values.sessionOldEncSecret),
      dbKeys: secrets(values.sessionDbKey, values.sessionOldDbKey),
      absoluteLifetimeSec: values.sessionAbsoluteLifetime,
      idleLifetimeSec: values.sessionIdleLifetime,
      sweepIntervalSec: values.sessionSweepInterval,
      sweepBatchSize: values.sessionSweepBatchSize,
      refreshSkewSec: values.refreshSkew,
      cacheTtlMs: values.sessionCacheTtl,
      maxPerUser: values.maxSessionsPerUser,
    },
    db: {
      type: values.dbType,
      path: sqliteFromName && values.dbName !== undefined ? resolvePathLike(values.dbPath, values.dbName) : values.dbPath,
      ...dbHostAndPort(values.dbHost, values.dbPort),
      ...(values.dbName !== undefined && { name: values.dbName }),
      ...(values.dbUsername !== undefined && { username: values.dbUsername }),
      ...(values.dbPassword !== undefined && { password: values.dbPassword }),
      ...(values.dbUrl !== undefined && { url: values.dbUrl }),
      schema: values.dbSchema,
      ...(values.redisUrl !== undefined && { redisUrl: values.redisUrl }),
      redisKeyPrefix: values.redisKeyPrefix,
    },
    oidc: { timeoutMs: values.oidcTimeout, allowInsecureIssuer: values.oidcAllowInsecureIssuer },
    clients: [],
    targets: [],
    legacyRoutes: values.legacyRoutes,
    readyzStrict: values.readyzStrict,
    configWatch: values.configWatch,
    limits: { maxBodyBytes: values.maxBodySize, maxHeaderBytes: values.maxHeaderSize },
    rateLimit: { loginPerMinute: values.loginRateLimit },
  };
}

/**
 * go-token-handler had no port setting: its users reach another port with `DB_HOST=host:port` (it built
 * `postgresql://user:pass@${DB_HOST}/db`). Such a value is split here; `[::1]:5433` too. A bare IPv6
 * address (`::1`) is a host. An explicit --db_port that disagrees is a problem (crossChecks).
 */
export function splitDbHost(value: string): { host: string; port?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(value);
  if (bracketed) return { host: bracketed[1]!, ...(bracketed[2] !== undefined && { port: Number(bracketed[2]) }) };
  const plain = /^([^:]+):(\d{1,5})$/.exec(value);
  if (plain) return { host: plain[1]!, port: Number(plain[2]) };
  return { host: value };
}

function dbHostAndPort(hostValue: string | undefined, portValue: number | undefined): { host?: string; port?: number } {
  if (hostValue === undefined) return portValue === undefined ? {} : { port: portValue };
  const { host, port } = splitDbHost(hostValue);
  const chosen = portValue ?? port;
  return { host, ...(chosen !== undefined && { port: chosen }) };
}

/** `name` next to the default db path (both relative to the same directory). */
function resolvePathLike(defaultPath: string, name: string): string {
  return name === ':memory:' ? name : resolvePath(dirname(defaultPath), name);
}

/** Rules that involve more than one option. */
function crossChecks(values: OptionValues, sources: Record<OptionKey, OptionSource>): string[] {
  const problems: string[] = [];
  const at = (key: OptionKey, shown?: string) => describeValue(key, shown, sources[key]);

  if ((values.tlsCert === undefined) !== (values.tlsKey === undefined)) {
    problems.push(`${values.tlsCert === undefined ? at('tlsKey') : at('tlsCert')}: --tls_cert and --tls_key go together; set both or neither`);
  }
  for (const key of ['tlsCert', 'tlsKey'] as const) {
    const file = values[key];
    if (file !== undefined && !existsSync(file)) problems.push(`${at(key, file)}: file not found`);
  }

  if (values.dbType === 'postgresql' && values.dbUrl === undefined && (values.dbHost === undefined || values.dbName === undefined)) {
    problems.push(`${at('dbType', 'postgresql')}: needs --db_url (DATABASE_URL), or --db_host and --db_name (with --db_username/--db_password as required by the server)`);
  }
  if (values.dbHost !== undefined) {
    const { port } = splitDbHost(values.dbHost);
    if (port !== undefined && (port < 1 || port > 65535)) problems.push(`${at('dbHost', values.dbHost)}: the port must be 1-65535`);
    else if (port !== undefined && values.dbPort !== undefined && values.dbPort !== port) {
      problems.push(`${at('dbHost', values.dbHost)}: names port ${port}, but --db_port is ${values.dbPort} (from ${sources.dbPort.label}); set one of them`);
    }
  }
  if (values.dbType === 'redis' && values.redisUrl === undefined) {
    problems.push(`${at('dbType', 'redis')}: needs --redis_url (REDIS_URL)`);
  }

  // Each worker would open a database of its own: sessions made on one would be unknown to the others.
  if (values.workers > 1 && values.dbType === 'sqlite' && (values.dbPath === ':memory:' || values.dbName === ':memory:')) {
    problems.push(`${at('workers', String(values.workers))}: workers share the session store, and an in-memory SQLite database (:memory:) is one process's; use a database file (--db_path)`);
  }

  if (values.cookieSameSite === 'none' && values.cookieSecure === false) {
    problems.push(`${at('cookieSameSite', 'none')}: SameSite=None requires Secure cookies, but --cookie_secure is false (from ${sources.cookieSecure.label})`);
  }

  const metrics = values.metricsListenAddr;
  const main = values.listenAddr;
  if (metrics !== undefined && metrics.port !== 0 && metrics.port === main.port) {
    const wildcard = (host: string) => host === '0.0.0.0' || host === '::';
    if (metrics.host === main.host || wildcard(metrics.host) || wildcard(main.host)) {
      problems.push(`${at('metricsListenAddr', `${metrics.host}:${metrics.port}`)}: the same address as --listen_addr; use another port or leave it unset to serve /metrics on the main listener`);
    }
  }
  const forwardAuth = values.forwardAuthListenAddr;
  if (values.forwardAuthAllow !== undefined && forwardAuth === undefined) {
    problems.push(`${at('forwardAuthAllow')}: only applies to the forward-auth listener; set --forward_auth_listen_addr (FORWARD_AUTH_LISTEN_ADDR) too`);
  }
  if (forwardAuth !== undefined && isSocketAddress(forwardAuth)) {
    // A Unix socket has no peer address to check: its file mode is what keeps browsers (and other users) out.
    if (values.forwardAuthAllow !== undefined) {
      problems.push(`${at('forwardAuthAllow')}: a Unix socket (--forward_auth_listen_addr ${forwardAuth.path}) has no peer address to check; its file mode (--forward_auth_socket_mode) decides who may connect`);
    }
  } else if (forwardAuth !== undefined && forwardAuth.port !== 0) {
    const wildcard = (host: string) => host === '0.0.0.0' || host === '::';
    const clash = (other: { host: string; port: number } | undefined) =>
      other !== undefined && other.port === forwardAuth.port && (other.host === forwardAuth.host || wildcard(other.host) || wildcard(forwardAuth.host));
    // The forward-auth answers carry access tokens: sharing a port with the browser-facing listener would serve them to browsers.
    if (clash(main)) problems.push(`${at('forwardAuthListenAddr', `${forwardAuth.host}:${forwardAuth.port}`)}: the same address as --listen_addr; forward-auth needs its own internal listener`);
    else if (clash(metrics)) problems.push(`${at('forwardAuthListenAddr', `${forwardAuth.host}:${forwardAuth.port}`)}: the same address as --metrics_listen_addr; use another port`);
  }

  const pairs = [
    ['sessionOldEncSecret', 'sessionEncSecret'],
    ['sessionOldDbKey', 'sessionDbKey'],
  ] as const;
  for (const [old, current] of pairs) {
    if (values[old] !== undefined && values[current] === undefined) {
      problems.push(`${at(old)}: an old key is only used for rotation; set --${optionDef(current).flag} (${optionDef(current).env}) too`);
    }
  }
  return problems;
}

function commandLineSecretWarnings(flagKeys: Iterable<OptionKey>): string[] {
  return [...flagKeys]
    .filter((key) => optionDef(key).secret)
    .map((key) => `--${optionDef(key).flag} was given on the command line, where other local users can read it (ps); prefer ${optionDef(key).env} or ${ENV_FILE_NAME}`);
}

const KNOWN_ENV_NAMES = new Set(optionKeys.map((key) => optionDef(key).env));

function unknownEnvFileWarnings(entries: ReadonlyMap<string, { line: number }>, referenced: ReadonlySet<string>): string[] {
  return [...entries]
    .filter(([name]) => !KNOWN_ENV_NAMES.has(name) && !referenced.has(name))
    .map(([name, { line }]) => `${ENV_FILE_NAME} line ${line}: ${name} is not a token-handler setting (ignored)`);
}
