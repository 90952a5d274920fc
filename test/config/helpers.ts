import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll } from 'vitest';
import { ConfigError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { LoadedConfig } from '../../src/config/load.ts';

/** A fresh temporary directory, removed after the test file. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'th-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `files` (relative name → content) under `dir`; returns `dir`. */
export function writeFiles(dir: string, files: Record<string, string>): string {
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
  }
  return dir;
}

export interface LoadOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export function load(argv: string[], { env = {}, cwd = emptyDir() }: LoadOptions = {}): LoadedConfig {
  return loadConfig({ argv, env, cwd });
}

/** The problems of the ConfigError that loading throws (fails the test if it does not throw). */
export function problemsOf(argv: string[], options: LoadOptions = {}): string[] {
  try {
    load(argv, options);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(argv)}`);
}

let sharedEmpty: string | undefined;
/** A directory without token_handler.env. */
export function emptyDir(): string {
  sharedEmpty ??= mkdtempSync(join(tmpdir(), 'th-config-empty-'));
  return sharedEmpty;
}

export const SECRET_32 = 'k'.repeat(32);
/** Valid production secrets, as flags. */
export const PRODUCTION_SECRETS = [
  '--session_auth_secret', 'A'.repeat(32),
  '--session_enc_secret', 'E'.repeat(32),
  '--session_db_key', 'D'.repeat(32),
];
export const OIDC = ['--oidc_issuer', 'https://idp.example.com', '--oidc_client_id', 'th', '--oidc_client_secret', 'client-secret'];
