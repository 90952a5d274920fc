/**
 * Configuration reload without a restart: clients and targets (ADSP keeps them in its configuration
 * service; here they are the config file's `clients:` and `targets:`, and the proxy file's).
 *
 * On SIGHUP, and when a config file changes (each instance watches its own files: a fleet sharing one
 * file, e.g. a Kubernetes ConfigMap, converges as each instance sees the change), the whole configuration
 * is loaded and validated again as at startup. A valid one is swapped in at once (synchronously: no
 * request sees half of it); a request already being handled finishes with the target it was matched to.
 * An invalid one is refused with one error line naming the file and every problem, and the configuration
 * in force stays. Options other than clients and targets take effect only at a restart: a change to them
 * is logged as needing one and otherwise ignored.
 */
import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError } from '../config/errors.ts';
import { loadConfig, type LoadConfigInput } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { OidcRegistry } from '../oidc/registry.ts';
import { planTarget } from '../proxy/plan.ts';
import { redirectUrlPath } from '../routes/legacy.ts';
import type { ServiceDirectory } from '../proxy/directory.ts';
import type { TargetTable } from '../proxy/table.ts';
import { isUrn } from '../proxy/directory.ts';

/** What a reload changes; everything else is read once at startup. */
const RELOADABLE: ReadonlySet<keyof Config> = new Set(['clients', 'targets']);

export interface ReloadLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ReloadResult {
  applied: boolean;
  /** Options that changed but take effect only at a restart (ignored). */
  needsRestart: string[];
  error?: string;
}

/**
 * Swaps `next`'s clients and targets into the running app, or throws (nothing swapped) when they cannot
 * be served. `next` is a Config loadConfig validated.
 */
export function applyConfig(ctx: AppContext, table: TargetTable<unknown>, directory: ServiceDirectory | undefined, next: Config, log: ReloadLog): ReloadResult {
  const current = ctx.config;
  const needsRestart: string[] = (Object.keys({ ...current, ...next }) as (keyof Config)[]).filter((key) => !RELOADABLE.has(key) && !isDeepStrictEqual(current[key], next[key]));
  const merged: Config = { ...current, clients: next.clients, targets: next.targets };
  // The callback route at the path of --oidc_redirect_url (routes/legacy.ts) is routed at startup.
  if (redirectUrlPath(current) !== redirectUrlPath(merged)) needsRestart.push('oidcRedirectUrl (its callback path)');

  // Every target must be servable with the new clients before anything is swapped.
  const candidate = new OidcRegistry(next.clients, { timeoutMs: current.oidc.timeoutMs, allowInsecureIssuer: current.oidc.allowInsecureIssuer });
  for (const target of next.targets) {
    if (isUrn(target.url)) continue;
    planTarget({ ...ctx, config: merged, registry: candidate }, target);
  }

  const clientChanges = ctx.registry.replaceClients(next.clients);
  ctx.config = merged;
  try {
    table.set(next.targets, directory);
  } catch (err) {
    ctx.registry.replaceClients(current.clients);
    ctx.config = current;
    throw err;
  }
  ctx.cookies.setClients(next.clients);
  if (needsRestart.length > 0) log.warn({ options: needsRestart }, 'configuration reload: these options change only at a restart; ignored until then');
  log.info({ clients: clientChanges, targets: targetChanges(current.targets, next.targets) }, 'configuration reloaded');
  return { applied: true, needsRestart };
}

function targetChanges(before: Config['targets'], after: Config['targets']): { added: string[]; changed: string[]; removed: string[] } {
  const old = new Map(before.map((target) => [target.id, target]));
  const ids = new Set(after.map((target) => target.id));
  return {
    added: after.filter((target) => !old.has(target.id)).map((target) => target.id),
    changed: after.filter((target) => old.has(target.id) && !isDeepStrictEqual(old.get(target.id), target)).map((target) => target.id),
    removed: before.filter((target) => !ids.has(target.id)).map((target) => target.id),
  };
}

export interface ConfigReloaderOptions {
  /** How the configuration was loaded at startup: it is loaded the same way again. */
  input: LoadConfigInput;
  /** The files the configuration came from (LoadedConfig.files): watched for changes. */
  files: readonly string[];
  /** Swaps a validated configuration in (TokenHandlerApp.reconfigure); throws when it cannot. */
  apply: (config: Config) => ReloadResult;
  log: ReloadLog;
  /** Reload when a file changes (default true); SIGHUP (reload()) works either way. */
  watch?: boolean;
  /** A burst of file events (an editor's save, a ConfigMap update) is one reload after this quiet time. */
  debounceMs?: number;
}

export interface ConfigReloader {
  /** Loads, validates and applies the configuration now (SIGHUP). Never throws. */
  reload(reason: string): ReloadResult;
  close(): void;
}

/**
 * Reloads on demand and when one of the files changes. Directories are watched rather than files: editors
 * and Kubernetes replace a file (rename, symlink swap) instead of writing into it. A file event whose
 * files read as before (another file of the directory changed) reloads nothing.
 */
export function startConfigReloader(options: ConfigReloaderOptions): ConfigReloader {
  const { input, log } = options;
  const debounceMs = options.debounceMs ?? 250;
  let files = [...options.files];
  let seen = snapshot(files);
  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;

  const reload = (reason: string): ReloadResult => {
    let loaded;
    try {
      loaded = loadConfig(input);
    } catch (err) {
      const error = err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message;
      log.error({ reason, files, error }, 'configuration reload refused: the new configuration is invalid; the previous one stays in force');
      return { applied: false, needsRestart: [], error };
    }
    try {
      const result = options.apply(loaded.config);
      if (!isDeepStrictEqual(files, loaded.files)) {
        files = [...loaded.files];
        if (options.watch !== false) rewatch();
      }
      seen = snapshot(files);
      return result;
    } catch (err) {
      const error = (err as Error).message;
      log.error({ reason, files, error }, 'configuration reload refused: the new configuration cannot be served; the previous one stays in force');
      return { applied: false, needsRestart: [], error };
    }
  };

  const changed = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      const now = snapshot(files);
      if (isDeepStrictEqual(now, seen)) return;
      seen = now;
      reload('file changed');
    }, debounceMs);
    timer.unref();
  };

  const rewatch = (): void => {
    for (const watcher of watchers) watcher.close();
    watchers = [];
    for (const dir of new Set(files.map((file) => dirname(file)))) {
      try {
        const watcher = watch(dir, { persistent: false }, changed);
        watcher.on('error', (err) => log.warn({ directory: dir, reason: err.message }, 'configuration watch failed; reload with SIGHUP'));
        watchers.push(watcher);
      } catch (err) {
        log.warn({ directory: dir, reason: (err as Error).message }, 'configuration files cannot be watched; reload with SIGHUP');
      }
    }
  };
  if (options.watch !== false) rewatch();

  return {
    reload,
    close() {
      if (timer) clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
      watchers = [];
    },
  };
}

/** The text of each file (undefined when unreadable), to tell a change of ours from another file's. */
function snapshot(files: readonly string[]): (string | undefined)[] {
  return files.map((file) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
  });
}

