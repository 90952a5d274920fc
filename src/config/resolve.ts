/**
 * Picks each option's value by precedence — flag > environment > token_handler.env > config file >
 * default — parses it with the option's parser, and remembers where it came from for messages.
 */
import { resolve as resolvePath } from 'node:path';
import { ENV_FILE_NAME } from './files.ts';
import type { ConfigFileOption, EnvFileEntry } from './files.ts';
import type { FlagValue } from './cli.ts';
import { optionDef, optionKeys } from './options.ts';
import type { OptionKey, OptionValues } from './options.ts';
import { InvalidValue } from './parsers.ts';

export type SourceKind = 'flag' | 'env' | 'envFile' | 'configFile' | 'default';

export interface OptionSource {
  kind: SourceKind;
  /** For messages: `flag --db_type`, `env DB_TYPE`, `token_handler.env DB_TYPE (line 3)`, `config file db_type`, `default`. */
  label: string;
}

export interface OptionLayers {
  flags: ReadonlyMap<OptionKey, FlagValue>;
  env: Readonly<Record<string, string | undefined>>;
  envFile: ReadonlyMap<string, EnvFileEntry>;
  configFile: ReadonlyMap<OptionKey, ConfigFileOption>;
  /** Relative paths given in the config file are resolved against its directory... */
  configFileDir: string | undefined;
  /** ...all others against the working directory. */
  cwd: string;
}

export interface ResolvedOptions {
  values: OptionValues;
  sources: Record<OptionKey, OptionSource>;
  /** Options whose given value was refused (their default stands in, so later checks skip them). */
  invalid: Set<OptionKey>;
  problems: string[];
}

interface Candidate {
  raw: string;
  source: OptionSource;
}

/** The highest-precedence raw value of one option. Empty environment variables count as unset. */
export function pickRaw(key: OptionKey, layers: Omit<OptionLayers, 'configFileDir' | 'cwd'>): Candidate | undefined {
  const def = optionDef(key);
  const flag = layers.flags.get(key);
  if (flag !== undefined) return { raw: flag.raw, source: { kind: 'flag', label: `flag ${flag.flag}` } };
  const env = layers.env[def.env];
  if (env !== undefined && env !== '') return { raw: env, source: { kind: 'env', label: `env ${def.env}` } };
  const fileEntry = layers.envFile.get(def.env);
  if (fileEntry !== undefined && fileEntry.value !== '') {
    return { raw: fileEntry.value, source: { kind: 'envFile', label: `${ENV_FILE_NAME} ${def.env} (line ${fileEntry.line})` } };
  }
  const configEntry = layers.configFile.get(key);
  if (configEntry !== undefined) return { raw: configEntry.raw, source: { kind: 'configFile', label: `config file ${configEntry.key}` } };
  return undefined;
}

/** `--db_type "mongo" (from env DB_TYPE)`; secrets are named, never shown. */
export function describeValue(key: OptionKey, raw: string | undefined, source: OptionSource): string {
  const def = optionDef(key);
  const shown = raw === undefined || def.secret ? '' : ` ${JSON.stringify(raw.length > 200 ? `${raw.slice(0, 200)}...` : raw)}`;
  return `--${def.flag}${shown} (from ${source.label})`;
}

export function resolveOptions(layers: OptionLayers): ResolvedOptions {
  const values: Record<string, unknown> = {};
  const sources = {} as Record<OptionKey, OptionSource>;
  const problems: string[] = [];
  const invalid = new Set<OptionKey>();
  for (const key of optionKeys) {
    const def = optionDef(key);
    const candidate = pickRaw(key, layers);
    const fallback = def.default === undefined ? undefined : def.parse(def.default);
    if (candidate === undefined) {
      values[key] = def.path && typeof fallback === 'string' && fallback !== ':memory:' ? resolvePath(layers.cwd, fallback) : fallback;
      sources[key] = { kind: 'default', label: 'default' };
      continue;
    }
    sources[key] = candidate.source;
    try {
      let value = def.parse(candidate.raw);
      if (def.path && typeof value === 'string' && value !== ':memory:') {
        const base = candidate.source.kind === 'configFile' && layers.configFileDir !== undefined ? layers.configFileDir : layers.cwd;
        value = resolvePath(base, value);
      }
      values[key] = value;
    } catch (error) {
      if (!(error instanceof InvalidValue)) throw error;
      problems.push(`${describeValue(key, candidate.raw, candidate.source)}: ${error.message}`);
      // Carry on with the default so that every other problem is still found.
      values[key] = fallback;
      invalid.add(key);
    }
  }
  // Every key of the table was assigned its parser's result (or its parsed default) above.
  return { values: values as OptionValues, sources, invalid, problems };
}
