/**
 * The benchmark's child processes (bench/fixtures.ts, bench/subject.ts): started with an IPC channel,
 * asked for their RSS, CPU time and garbage collections, frozen and stopped; CPU affinity; and the login
 * that gives a token-handler subject its session cookie.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBrowser } from '../test/support/http.ts';
import { loginAtDevIdp } from '../test/support/login.ts';
import type { GcStats } from './subject.ts';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const API = '/token-handler/v1';
/** Where both the bare proxy and token-handler mount the target (bench/subject.ts). */
export const TARGET_PATH = `${API}/targets/api`;

export interface Child<T> {
  process: ChildProcess;
  ready: T;
  rss(): Promise<number>;
  /** CPU time (user + system) the child has used, µs. */
  cpu(): Promise<number>;
  /**
   * Starts recording the child's garbage collections; `gcStop` ends it and sums them up (undefined for a
   * worker group, whose requests are served by other processes than the one asked).
   */
  gcStart(): Promise<void>;
  gcStop(): Promise<GcStats | undefined>;
  stop(): Promise<void>;
}

/** A program the child's Node.js runs under (valgrind): `command [...args] node [...execArgv] script`. */
export interface Wrapper {
  command: string;
  args: string[];
}

export function canSetAffinity(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Restricts a process and all its threads to `cpuList` (taskset syntax, `0` or `0-2`). */
export function setAffinity(pid: number, cpuList: string): void {
  execFileSync('taskset', ['-a', '-pc', cpuList, String(pid)], { stdio: 'ignore' });
}

export async function startChild<T extends { type: 'ready' }>(script: string, args: string[], execArgv: string[] = [], root = HERE, wrapper?: Wrapper): Promise<Child<T>> {
  const nodeArgv = [...process.execArgv, ...execArgv];
  // fork() runs `execPath ...execArgv script ...args`: with a wrapper, that is the wrapper, its arguments and
  // then node with its own; the IPC channel (an inherited descriptor) passes through to node.
  const child = fork(join(root, script), args, {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    ...(wrapper ? { execPath: wrapper.command, execArgv: [...wrapper.args, process.execPath, ...nodeArgv] } : { execArgv: nodeArgv }),
  });
  const ready = await new Promise<T>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${script} exited with ${code} before it was ready`));
    child.once('exit', onExit);
    child.once('error', reject);
    child.on('message', (message: { type?: string }) => {
      if (message.type === 'ready') {
        child.off('exit', onExit);
        resolve(message as T);
      }
    });
  });
  // A subject that dies mid-run is reported (with its signal) and fails the run instead of leaving it waiting.
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`[bench] ${script} ${args[0]?.slice(0, 80) ?? ''} (pid ${child.pid}) exited unexpectedly: code ${code}, signal ${signal}\n`);
  });
  const request = <R>(type: 'rss' | 'cpu' | 'gc-start' | 'gc-stop', pick: (message: Record<string, unknown>) => R) =>
    new Promise<R>((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`${script} (pid ${child.pid}) has exited`));
      const onExit = () => reject(new Error(`${script} (pid ${child.pid}) exited while asked for ${type}`));
      const onMessage = (message: Record<string, unknown>) => {
        if (message.type !== type) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(pick(message));
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send(type);
    });
  const ask = (type: 'rss' | 'cpu', field: 'rss' | 'micros') => request(type, (message) => Number(message[field] ?? 0));
  return {
    process: child,
    ready,
    rss: () => ask('rss', 'rss'),
    cpu: () => ask('cpu', 'micros'),
    gcStart: () => request('gc-start', () => undefined),
    gcStop: () => request('gc-stop', (message) => message.gc as GcStats | undefined),
    stop: () =>
      new Promise<void>((resolve) => {
        stopping = true;
        if (child.exitCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGCONT'); // in case the proxy benchmark left it stopped (Options.freeze)
        child.disconnect();
      }),
  };
}

/** A full login at the dev IdP through token-handler at `base`; its session cookie's value. */
export async function login(base: string): Promise<string> {
  const browser = createBrowser();
  const flow = await loginAtDevIdp(browser, `${base}${API}/clients/default/auth`, { username: 'demo', password: 'demo' });
  await flow.response.body?.cancel();
  const cookie = browser.cookie('session', base)?.value;
  if (!cookie) throw new Error(`login at ${base} failed: status ${flow.response.status}, no session cookie`);
  return cookie;
}
