/**
 * The token-handler configuration of an IdP guide (docs/idps/*.md), loaded the way `--config` loads a file,
 * so the guide and the test that runs it cannot drift: the test replaces the guide's example URLs (and
 * file names) with its own, nothing else.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/types.ts';
import { tempDir } from '../config.ts';

const MARKER = /<!-- test-config:[^>]*-->\s*```yaml\n([\s\S]*?)```/;

/** The YAML block after the guide's `test-config` marker. */
export function guideYaml(guide: string): string {
  const text = readFileSync(new URL(`../../../docs/idps/${guide}.md`, import.meta.url), 'utf8');
  const match = MARKER.exec(text);
  if (!match?.[1]) throw new Error(`docs/idps/${guide}.md has no test-config YAML block`);
  return match[1];
}

export interface GuideConfigOptions {
  /** Example text -> what the test runs against (IdP origin, app origin, upstream). */
  replace: Record<string, string>;
  /** Environment the configuration reads (client secrets). */
  env?: Record<string, string>;
  /** Files written beside the config file (private keys the guide names relatively). */
  files?: Record<string, string | Buffer>;
}

const FLAGS_MARKER = /<!-- test-flags:[^>]*-->\s*```sh\n([\s\S]*?)```/;

/**
 * The arguments of the `token-handler` command after the guide's `test-flags` marker, example text
 * replaced first (`replace`), split as a shell would split them (backslash-newline continues the line;
 * double or single quotes group a word).
 */
export function guideFlags(guide: string, replace: Record<string, string>): string[] {
  const text = readFileSync(new URL(`../../../docs/idps/${guide}.md`, import.meta.url), 'utf8');
  const match = FLAGS_MARKER.exec(text);
  if (!match?.[1]) throw new Error(`docs/idps/${guide}.md has no test-flags sh block`);
  let command = match[1].replace(/\\\n/g, ' ');
  for (const [from, to] of Object.entries(replace)) command = command.replaceAll(from, to);
  const words = [...command.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
  const at = words.indexOf('token-handler');
  if (at < 0) throw new Error(`docs/idps/${guide}.md: the test-flags block runs no token-handler command`);
  return words.slice(at + 1);
}

/** Loads the guide's configuration with development settings for a test (http issuer, SQLite in a temp dir). */
export function guideConfig(guide: string, options: GuideConfigOptions): Config {
  let yaml = guideYaml(guide);
  for (const [from, to] of Object.entries(options.replace)) yaml = yaml.replaceAll(from, to);
  const dir = tempDir('th-guide-');
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), content);
  writeFileSync(join(dir, 'token-handler.yaml'), yaml);
  const { config } = loadConfig({
    argv: ['--config', 'token-handler.yaml', '--oidc_allow_insecure_issuer', '--log_level', 'silent', '--db_path', join(dir, 'sessions.db'), '--login_rate_limit', '0'],
    env: options.env ?? {},
    cwd: dir,
  });
  return config;
}

/**
 * A port free right now on 127.0.0.1. It is released before the app binds it: start the app through
 * `startOnOwnPort` (test/multi/support.ts) or `onFreePort` (test/support/ports.ts), which try another port
 * when another process took it meanwhile.
 */
export { freePort } from '../ports.ts';
