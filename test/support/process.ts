/**
 * Runs one of the project's commands as a user would (a child process), collects its output, and either
 * waits for it to exit or for a line that says it is up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The Node 24 running the tests. */
export const NODE = process.execPath;

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  /** Output so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves with the first match of `pattern` in stdout; rejects if the process exits first. */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  /** SIGTERM (unless already gone), then the exit. */
  stop(): Promise<Finished>;
  exited: Promise<Finished>;
}

export interface StartOptions {
  cwd?: string;
  /** The whole environment of the child (not merged with the test's). */
  env: NodeJS.ProcessEnv;
}

export function start(command: string, args: readonly string[], options: StartOptions): Running {
  const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const watcher of watchers) watcher();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Finished>((resolve) => {
    child.once('close', (code, signal) => {
      resolve({ code, signal, stdout, stderr });
      for (const watcher of watchers) watcher();
    });
  });
  return {
    child,
    get stdout() { return stdout; },
    get stderr() { return stderr; },
    exited,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const match = pattern.exec(stdout);
          if (match) {
            watchers.delete(check);
            resolve(match);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            watchers.delete(check);
            reject(new Error(`exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${stdout}\n${stderr}`));
          }
        };
        watchers.add(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs a command to its end. */
export function run(command: string, args: readonly string[], options: StartOptions): Promise<Finished> {
  return start(command, args, options).exited;
}

/** The test's environment without what would change how the child behaves (CI's, vitest's, npm's). */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TERM']) if (process.env[name] !== undefined) env[name] = process.env[name];
  return { ...env, ...extra };
}

/** The flags of the default client at the dev IdP `issuer` (its client token-handler and secret), an http issuer allowed. */
export function devIdpClientFlags(issuer: string): string[] {
  return [`--oidc_issuer=${issuer}`, '--oidc_client_id=token-handler', '--oidc_client_secret=token-handler-secret', '--oidc_allow_insecure_issuer'];
}
