/**
 * The per-request log line is assembled by src/ops/requestLog.ts for loggers made by createLogger: it
 * must be the line pino itself writes with log.ts' options (same fields, same redaction), and never
 * valid JSON broken by what a client put in the URL. And stdout (src/ops/logDestination.ts) loses no
 * line, also when the process exits in the same turn or dies of an uncaught exception.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../support/config.ts';
import { memoryLogger, startTokenHandler, type Running } from './support.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl';

describe('the request line', () => {
  const fast = memoryLogger('info');
  const plain = memoryLogger('info', { plainPino: true });
  let a: Running;
  let b: Running;

  beforeAll(async () => {
    a = await startTokenHandler(testConfig({ logLevel: 'info' }), { logger: fast.logger });
    b = await startTokenHandler(testConfig({ logLevel: 'info' }), { logger: plain.logger });
  });
  afterAll(async () => {
    await a?.app.close();
    await b?.app.close();
  });

  const paths = [
    '/token-handler/v1/sessions',
    `/token-handler/v1/sessions?code=secret-code&state=st&keep=1`,
    `/token-handler/v1/sessions?x=${JWT}`,
    '/token-handler/v1/sessions?q=%22quoted%22&u=%E2%82%AC',
    '/nowhere/"\\<>',
    '/healthz',
  ];

  it.each(paths.map((path, i) => [path, `case-${i}`]))('is the line pino writes: %s', async (path, id) => {
    const request = { method: 'GET' as const, url: path, headers: { host: 'app.example.test', 'x-request-id': id }, remoteAddress: '203.0.113.9' };
    const [ra, rb] = await Promise.all([a.app.inject(request), b.app.inject(request)]);
    expect(ra.statusCode).toBe(rb.statusCode);
    const pick = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.reqId === id && l.msg === 'request completed');
    const la = pick(fast.lines());
    const lb = pick(plain.lines());
    if (path === '/healthz') {
      // Health probes log at warn: no line either way.
      expect(la).toEqual([]);
      expect(lb).toEqual([]);
      return;
    }
    expect(la).toHaveLength(1);
    expect(lb).toHaveLength(1);
    const strip = ({ time, responseTime, ...rest }: Record<string, unknown>) => {
      expect(typeof time).toBe('number');
      expect(typeof responseTime).toBe('number');
      return rest;
    };
    expect(strip(la[0]!)).toEqual(strip(lb[0]!));
    expect(Object.keys(la[0]!)).toEqual(Object.keys(lb[0]!));
    const url = (la[0]!.req as { url: string }).url;
    expect(url).not.toContain('secret-code');
    expect(url).not.toContain(JWT);
  });

  it('redacts secret query values and JWTs in the URL', () => {
    const urls = fast
      .lines()
      .filter((l) => l.msg === 'request completed')
      .map((l) => (l.req as { url: string }).url);
    expect(urls).toContain('/token-handler/v1/sessions?code=%5BREDACTED%5D&state=%5BREDACTED%5D&keep=1');
    expect(urls).toContain('/token-handler/v1/sessions?x=[REDACTED_JWT]');
  });
});

/** Runs `code` (an ES module using src/log.ts) in a child process; its stdout lines and exit code. */
function runChild(code: string): Promise<{ lines: Array<Record<string, unknown>>; exitCode: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (exitCode) =>
      resolve({
        exitCode,
        lines: out
          .split('\n')
          .filter((l) => l.length > 0)
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      }),
    );
  });
}

describe('stdout, one write per turn of the event loop', () => {
  const prelude = `import { createLogger } from './src/log.ts'; const log = createLogger({ logLevel: 'info', isProduction: true }, false);`;

  it('writes lines of later turns as they come, in order', async () => {
    const { lines, exitCode } = await runChild(`${prelude} log.info('one'); log.info('two'); setTimeout(() => { log.info('three'); setTimeout(() => process.exit(0), 20); }, 20);`);
    expect(exitCode).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual(['one', 'two', 'three']);
  });

  it('loses nothing when the process exits in the same turn', async () => {
    const { lines, exitCode } = await runChild(`${prelude} for (let i = 0; i < 500; i++) log.info({ i }, 'line'); process.exit(3);`);
    expect(exitCode).toBe(3);
    expect(lines).toHaveLength(500);
    expect(lines.map((l) => l.i)).toEqual([...Array(500).keys()]);
  });

  it('loses nothing when the process dies of an uncaught exception', async () => {
    const { lines, exitCode } = await runChild(`${prelude} log.info('before the crash'); setImmediate(() => { throw new Error('boom'); });`);
    expect(exitCode).toBe(1);
    expect(lines.map((l) => l.msg)).toEqual(['before the crash']);
  });
});
