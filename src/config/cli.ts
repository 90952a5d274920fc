/**
 * The command line, read against the option table. Hand-rolled rather than commander because every
 * problem must be reported at once (commander stops at the first error, and treats everything after
 * an unknown option as unknown) and because each flag has two spellings (`--db_type`, `--db-type`).
 * Go `flag` conventions: `--name value`, `--name=value`, a switch alone means true
 * (`--is_production`), `--switch=false` (or `--switch false`) to turn it off; the last occurrence wins.
 */
import { helpText, optionByName, optionDef, optionKeys, versionText } from './options.ts';
import type { OptionKey } from './options.ts';

export interface FlagValue {
  raw: string;
  /** As typed, e.g. `--db-type`. */
  flag: string;
}

export interface ParsedArgv {
  values: Map<OptionKey, FlagValue>;
  problems: string[];
  help: boolean;
  version: boolean;
}

export function parseArgv(argv: readonly string[]): ParsedArgv {
  const values = new Map<OptionKey, FlagValue>();
  const problems: string[] = [];
  let help = false;
  let version = false;

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] ?? '';
    if (token === '--') {
      for (const rest of argv.slice(i + 1)) problems.push(`unexpected argument ${JSON.stringify(rest)}: token-handler takes only options`);
      break;
    }
    if (token === '-h' || token === '--help') {
      help = true;
      continue;
    }
    if (token === '-v' || token === '-V' || token === '--version') {
      version = true;
      continue;
    }
    if (!token.startsWith('--')) {
      problems.push(`unexpected argument ${JSON.stringify(token)}: token-handler takes only options`);
      continue;
    }
    const equals = token.indexOf('=');
    const name = equals === -1 ? token : token.slice(0, equals);
    const key = optionByName(name.slice(2));
    if (key === undefined) {
      problems.push(`unknown option ${name}${suggestion(name.slice(2))}; run --help for the list`);
      // Its value, if it has one, is not a separate mistake.
      if (equals === -1 && argv[i + 1] !== undefined && !(argv[i + 1] ?? '').startsWith('-')) i++;
      continue;
    }
    const def = optionDef(key);
    if (equals !== -1) {
      values.set(key, { raw: token.slice(equals + 1), flag: name });
      continue;
    }
    const next = argv[i + 1];
    if (def.switch) {
      // Alone it means true; a following non-option word is its value (there are no positional arguments).
      const hasValue = next !== undefined && !next.startsWith('-');
      values.set(key, { raw: hasValue ? next : 'true', flag: name });
      if (hasValue) i++;
      continue;
    }
    if (next === undefined || (next.startsWith('--') && (optionByName(next.slice(2).split('=')[0] ?? '') !== undefined || next === '--help'))) {
      problems.push(`${name}: missing value (${def.valueName.trim()})`);
      continue;
    }
    values.set(key, { raw: next, flag: name });
    i++;
  }
  return { values, problems, help, version };
}

/** "did you mean" for a misspelt flag: the closest flag within a small edit distance. */
function suggestion(name: string): string {
  const wanted = name.replaceAll('-', '_').toLowerCase();
  let best: { flag: string; distance: number } | undefined;
  for (const key of optionKeys) {
    const flag = optionDef(key).flag;
    const distance = editDistance(wanted, flag);
    if (best === undefined || distance < best.distance) best = { flag, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(wanted.length / 5)) ? ` (did you mean --${best.flag}?)` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * For `main.ts`, before `loadConfig`: the text to print (then exit 0) when argv asks for `--help` or
 * `--version`, otherwise undefined. `argv` is `process.argv.slice(2)`.
 */
export function helpOrVersion(argv: readonly string[]): string | undefined {
  const { help, version } = parseArgv(argv);
  if (help) return helpText();
  if (version) return versionText();
  return undefined;
}
