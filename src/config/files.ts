/**
 * Reading the files configuration may come from: the dotenv-style `token_handler.env` in the working
 * directory, the `--config` file and the `--proxy_config` file (YAML, of which JSON is a subset).
 * Problems never quote file contents: a line of an env file may well be a secret.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { optionByName, optionDef } from './options.ts';
import type { OptionKey } from './options.ts';

export const ENV_FILE_NAME = 'token_handler.env';

export interface EnvFileEntry {
  value: string;
  line: number;
}

export interface EnvFile {
  entries: Map<string, EnvFileEntry>;
  problems: string[];
}

/** `token_handler.env` in `cwd`, if present (the file go-token-handler read via viper). */
export function readEnvFile(cwd: string): EnvFile {
  const file = join(cwd, ENV_FILE_NAME);
  if (!existsSync(file)) return { entries: new Map(), problems: [] };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { entries: new Map(), problems: [`${ENV_FILE_NAME}: cannot be read (${errorCode(error)})`] };
  }
  return parseEnvFile(text);
}

/**
 * dotenv syntax: `KEY=VALUE` per line, optional `export ` prefix, `#` comments (whole line, or after
 * whitespace in an unquoted value), values optionally in single quotes (literal) or double quotes
 * (with \n, \t, \", \\ escapes).
 */
export function parseEnvFile(text: string): EnvFile {
  const entries = new Map<string, EnvFileEntry>();
  const problems: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const line = index + 1;
    const trimmed = rawLine.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(trimmed);
    if (!match) {
      problems.push(`${ENV_FILE_NAME} line ${line}: expected KEY=VALUE`);
      return;
    }
    const key = match[1] ?? '';
    const value = parseEnvValue(match[2] ?? '');
    if (value === undefined) {
      problems.push(`${ENV_FILE_NAME} line ${line} (${key}): unterminated quote or text after the closing quote`);
      return;
    }
    entries.set(key, { value, line });
  });
  return { entries, problems };
}

function parseEnvValue(rest: string): string | undefined {
  const quote = rest[0];
  if (quote === '"' || quote === "'") {
    let value = '';
    for (let i = 1; i < rest.length; i++) {
      const char = rest[i] ?? '';
      if (char === quote) {
        const after = rest.slice(i + 1).trim();
        return after === '' || after.startsWith('#') ? value : undefined;
      }
      if (quote === '"' && char === '\\' && i + 1 < rest.length) {
        const escaped = rest[++i] ?? '';
        value += ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[escaped] ?? escaped;
        continue;
      }
      value += char;
    }
    return undefined;
  }
  const comment = rest.search(/\s#/);
  return (comment === -1 ? rest : rest.slice(0, comment)).trim();
}

/** A YAML or JSON file; problems carry the file's label and the line, never the text. */
export function readDataFile(file: string, label: string): { data: unknown; problems: string[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { data: undefined, problems: [`${label} ${JSON.stringify(file)}: cannot be read (${errorCode(error)})`] };
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (document.errors.length > 0) {
    return {
      data: undefined,
      problems: document.errors.map((error) => {
        const position = lineCounter.linePos(error.pos[0]);
        const where = position ? ` line ${position.line} column ${position.col}` : '';
        // The YAML library's message can quote the offending text: keep only its first sentence.
        const message = error.message.split('\n')[0] ?? error.code;
        return `${label} ${JSON.stringify(file)}${where}: invalid YAML/JSON (${error.code}: ${message.replace(/ at line \d+.*$/, '')})`;
      }),
    };
  }
  return { data: document.toJS() as unknown, problems: [] };
}

export interface ConfigFileOption {
  raw: string;
  /** The key as written, for messages: `db_type`. */
  key: string;
}

export interface ConfigFileContent {
  options: Map<OptionKey, ConfigFileOption>;
  clients: unknown;
  targets: unknown;
  proxies: unknown;
  problems: string[];
}

const SECTION_KEYS = ['clients', 'targets', 'proxies'];

/** Splits a config file into option values (keys = flag names) and the clients/targets/proxies sections. */
export function splitConfigFile(data: unknown, label: string): ConfigFileContent {
  const content: ConfigFileContent = { options: new Map(), clients: undefined, targets: undefined, proxies: undefined, problems: [] };
  if (data === undefined || data === null) return content;
  if (!isPlainObject(data)) {
    content.problems.push(`${label}: must be a mapping of option names, clients, targets and proxies`);
    return content;
  }
  for (const [key, value] of Object.entries(data)) {
    if (key === 'clients') content.clients = value;
    else if (key === 'targets') content.targets = value;
    else if (key === 'proxies') content.proxies = value;
    else {
      const option = optionByName(key);
      if (option === undefined || option === 'config') {
        content.problems.push(
          `${label} ${key}: unknown key; allowed: ${SECTION_KEYS.join(', ')} or an option name such as log_level (see docs/configuration.md)`,
        );
        continue;
      }
      if (value === null || value === undefined) continue;
      const raw = scalarText(value, optionDef(option).list === true);
      if (raw === undefined) {
        content.problems.push(`${label} ${key}: must be a string, number or boolean${optionDef(option).list ? ' or a list of them' : ''}`);
        continue;
      }
      content.options.set(option, { raw, key });
    }
  }
  return content;
}

function scalarText(value: unknown, list: boolean): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (list && Array.isArray(value) && value.every((item) => typeof item === 'string' || typeof item === 'number')) return value.join(',');
  return undefined;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function errorCode(error: unknown): string {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : 'error';
}
