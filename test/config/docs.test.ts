/**
 * docs/configuration.md's examples are the program's real output (issue 22.4): the error example is run
 * as written (its file, its command line), the warning quoted is one the program gives.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, formatConfigError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { tempDir, writeFiles } from './helpers.ts';

const docs = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

/** The text of the first fenced block of `language` after `heading`. */
function block(heading: string, language: string): string {
  const section = docs.slice(docs.indexOf(heading));
  const match = new RegExp('```' + language + '\\n([\\s\\S]*?)```').exec(section);
  if (!match) throw new Error(`no \`\`\`${language} block after ${heading}`);
  return match[1]!;
}

describe('docs/configuration.md', () => {
  it('shows the errors the example configuration really gives', () => {
    const file = block('## Errors', 'yaml');
    const [command, ...expected] = block('## Errors', 'console').split('\n');
    // `$ NAME=... NAME=... token-handler <args>`: the variables are set, the arguments passed as written.
    const match = /^\$ ((?:\w+=\S+ )*)token-handler (.*)$/.exec(command ?? '');
    expect(match, command).not.toBeNull();
    const env = Object.fromEntries((match![1] ?? '').trim().split(' ').filter(Boolean).map((pair) => pair.split('=') as [string, string]));
    const fileName = /--config (\S+)/.exec(match![2]!)?.[1] ?? '';
    const dir = writeFiles(tempDir(), { [fileName]: file });
    let error: unknown;
    try {
      loadConfig({ argv: match![2]!.split(' '), env, cwd: dir });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(`${formatConfigError(error)}\n`).toBe(expected.join('\n'));
  });

  it('quotes a development warning the program really gives', () => {
    const quoted = /for example: `([^`]+)`/.exec(docs.replace(/\n/g, ' '))?.[1];
    expect(quoted).toBeDefined();
    const { warnings } = loadConfig({ argv: ['--db_path', ':memory:'], env: {}, cwd: tempDir() });
    expect(warnings).toContain(quoted);
  });
});
