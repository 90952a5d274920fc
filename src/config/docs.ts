/**
 * The options reference of docs/configuration.md, generated from the option table so the docs cannot
 * drift (a test checks the file contains this output). Regenerate the file's table with
 * `node src/config/docs.ts --write`, or print it with `node src/config/docs.ts`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { GROUPS, optionDef, optionKeys } from './options.ts';

export const BEGIN_MARKER = '<!-- BEGIN GENERATED OPTIONS (node src/config/docs.ts --write) -->';
export const END_MARKER = '<!-- END GENERATED OPTIONS -->';

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** One Markdown table per option group: flag, environment variable, default, description. */
export function configurationMarkdown(): string {
  const sections: string[] = [];
  for (const group of GROUPS) {
    const rows = optionKeys
      .map((key) => optionDef(key))
      .filter((def) => def.group === group)
      .map((def) => {
        const flag = `\`--${def.flag}\``;
        const shownDefault = def.default === undefined ? '' : `\`${cell(def.default)}\``;
        const notes = [def.switch ? 'Flag may be given alone (= true).' : '', def.secret ? 'Secret: never logged.' : '', def.list ? 'Comma list (a YAML list in the config file).' : '']
          .filter((note) => note !== '')
          .join(' ');
        return `| ${flag} | \`${def.env}\` | ${shownDefault} | ${cell(def.description)}${notes === '' ? '' : ` ${notes}`} |`;
      });
    sections.push(`### ${group}\n\n| Flag | Environment variable | Default | Description |\n|---|---|---|---|\n${rows.join('\n')}\n`);
  }
  return sections.join('\n');
}

/** The docs file with its generated section replaced by the current table. */
export function updatedDocument(document: string): string {
  const begin = document.indexOf(BEGIN_MARKER);
  const end = document.indexOf(END_MARKER);
  if (begin === -1 || end === -1 || end < begin) throw new Error(`docs/configuration.md lacks the ${BEGIN_MARKER} ... ${END_MARKER} markers`);
  return `${document.slice(0, begin + BEGIN_MARKER.length)}\n\n${configurationMarkdown()}\n${document.slice(end)}`;
}

if (import.meta.main) {
  if (process.argv.includes('--write')) {
    const file = new URL('../../docs/configuration.md', import.meta.url);
    writeFileSync(file, updatedDocument(readFileSync(file, 'utf8')));
  } else {
    process.stdout.write(configurationMarkdown());
  }
}
