/**
 * The benchmark's real peers (issue 24.3), each logged in through the same dev IdP as token-handler:
 *
 * - `apache`: Apache httpd (Debian's apache2, MPM event) + mod_auth_openidc, server-side session cache in
 *   shared memory (`OIDCCacheType shm`), the access token injected with
 *   `RequestHeader set Authorization "Bearer %{OIDC_access_token}e"` and the API proxied with `ProxyPass`.
 * - `nginx`: Debian's nginx in front, `auth_request` to token-handler's forward-auth listener
 *   (docs/forward-auth.md), the API proxied by nginx itself.
 *
 * Both are started in the foreground from a generated configuration in a temporary directory, on a free port
 * of 127.0.0.1, by the bench subject that owns them (bench/subject.ts), and stopped with it. Their processes
 * (master and workers) are counted in the subject's CPU time and RSS (`processTree`, from /proc).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBrowser } from '../test/support/http.ts';
import { loginAtDevIdp } from '../test/support/login.ts';
import { freePort } from '../test/support/nginx.ts';

export const APACHE_BIN = process.env.TH_BENCH_APACHE ?? '/usr/sbin/apache2';
export const APACHE_MODULES = process.env.TH_BENCH_APACHE_MODULES ?? '/usr/lib/apache2/modules';

/** Why Apache + mod_auth_openidc cannot run here (after trying to install them from Debian), or undefined. */
export function ensureApache(log: (line: string) => void): string | undefined {
  const missing = (): boolean => !existsSync(APACHE_BIN) || !existsSync(join(APACHE_MODULES, 'mod_auth_openidc.so'));
  if (!missing()) return undefined;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    return `${APACHE_BIN} or mod_auth_openidc.so not found: apt-get install apache2 libapache2-mod-auth-openidc`;
  }
  log('[peers] installing apache2 and libapache2-mod-auth-openidc from Debian');
  // (Debian's package may start its own apache2 service on port 80: the bench's instance uses its own port.)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'apache2', 'libapache2-mod-auth-openidc'], { env, encoding: 'utf8' });
  if (install.status !== 0 || missing()) return `apt-get install apache2 libapache2-mod-auth-openidc failed: ${install.stderr.slice(-500)}`;
  return undefined;
}

export interface Peer {
  port: number;
  /** The peer's main process (its workers are found from it). */
  pid: number;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, what: string, logs: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`${what} did not start on port ${port}:\n${logs()}`);
}

function stopper(child: ChildProcess, signal: NodeJS.Signals): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill(signal);
    });
}

export interface ApacheOptions {
  issuer: string;
  upstream: string;
  /** The path the API is proxied at (the same as token-handler's target mount path). */
  targetPath: string;
  /** Threads in all (MPM event), 64 by default, shared equally by the child processes. */
  threads?: number;
  /**
   * Child processes (MPM event), 1 by default: one process, as each Node.js proxy is one, for the pinned case.
   * The all-cores case (`run.ts --workers ...auto`) runs one per core: the shape of Debian's mpm_event.conf
   * (`StartServers 2`, threads in each child) with its pool fixed, so that no child starts or retires mid-round.
   */
  children?: number;
}

/** The generated httpd.conf (exported for docs and failure messages). */
export function apacheConfig(dir: string, port: number, options: ApacheOptions): string {
  const children = options.children ?? 1;
  const threads = Math.max(1, Math.round((options.threads ?? 64) / children));
  const module = (name: string, file: string) => `LoadModule ${name} ${join(APACHE_MODULES, file)}`;
  const root = process.getuid?.() === 0;
  return `
ServerRoot ${dir}
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile ${dir}/httpd.pid
DefaultRuntimeDir ${dir}
Mutex file:${dir} default
ErrorLog ${dir}/error.log
LogLevel ${process.env.TH_BENCH_APACHE_LOG_LEVEL ?? 'warn'}
${root ? 'User www-data\nGroup www-data' : ''}
${module('mpm_event_module', 'mod_mpm_event.so')}
${module('authn_core_module', 'mod_authn_core.so')}
${module('authz_core_module', 'mod_authz_core.so')}
${module('authz_user_module', 'mod_authz_user.so')}
${module('headers_module', 'mod_headers.so')}
${module('proxy_module', 'mod_proxy.so')}
${module('proxy_http_module', 'mod_proxy_http.so')}
${module('auth_openidc_module', 'mod_auth_openidc.so')}

# MPM event, ${children} child process(es) with a fixed pool of ${threads} threads each (1 child: as each Node.js
# proxy is one process; more: one per core, Debian's default shape with its pool fixed).
StartServers ${children}
ServerLimit ${children}
ThreadLimit ${threads}
ThreadsPerChild ${threads}
MaxRequestWorkers ${threads * children}
MinSpareThreads 1
MaxSpareThreads ${threads * children}
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60

# One line per request, as token-handler and nginx write.
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" timed
CustomLog ${dir}/access.log timed

OIDCProviderMetadataURL ${options.issuer}/.well-known/openid-configuration
OIDCClientID token-handler
OIDCClientSecret token-handler-secret
OIDCRedirectURI http://127.0.0.1:${port}/callback
OIDCCryptoPassphrase ${randomBytes(24).toString('hex')}
OIDCScope "openid profile"
OIDCPKCEMethod S256
OIDCSSLValidateServer Off
# Server-side sessions in shared memory; the browser holds only the session id cookie.
OIDCSessionType server-cache
OIDCCacheType shm
# mod_auth_openidc ends a session after 300 s without a request (OIDCSessionInactivityTimeout's default), and
# answers the next request with a 302 to the IdP: Apache sits idle while the other cases are measured, longer
# than that in a run with every case. Give it token-handler's default instead (--session_idle_lifetime 1h).
OIDCSessionInactivityTimeout 3600
OIDCPassClaimsAs environment
OIDCPassIDTokenAs payload
# The upstream never sees the session cookie (token-handler strips its own cookies too).
OIDCStripCookies mod_auth_openidc_session

<Location />
  AuthType openid-connect
  Require valid-user
  # Redirect to the IdP whatever the request looks like (Node's fetch says Sec-Fetch-Mode: cors, which
  # mod_auth_openidc otherwise answers with 401 as a non-browser request).
  OIDCUnAuthAction auth true
</Location>

ProxyPass ${options.targetPath}/ ${options.upstream}/
RequestHeader set Authorization "Bearer %{OIDC_access_token}e"
`;
}

/** Apache + mod_auth_openidc in the foreground (`apache2 -f <conf> -DFOREGROUND`). */
export async function startApache(options: ApacheOptions): Promise<Peer> {
  const dir = mkdtempSync(join(tmpdir(), 'th-bench-apache-'));
  // The worker runs as www-data when started as root: it reads nothing here, but may need to traverse.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const file = join(dir, 'httpd.conf');
  writeFileSync(file, apacheConfig(dir, port, options));
  const check = spawnSync(APACHE_BIN, ['-t', '-f', file], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`apache2 rejected the generated configuration:\n${check.stderr}`);
  const child = spawn(APACHE_BIN, ['-f', file, '-DFOREGROUND'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const logs = (): string => {
    try {
      return `${stderr}\n${readFileSync(join(dir, 'error.log'), 'utf8')}`;
    } catch {
      return stderr;
    }
  };
  await waitForPort(port, child, 'apache2', logs);
  const stop = stopper(child, 'SIGTERM');
  return {
    port,
    pid: child.pid!,
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A full login at the dev IdP through mod_auth_openidc, started at a protected URL as a browser would; the
 * value of its `mod_auth_openidc_session` cookie.
 */
export async function loginApache(protectedUrl: string): Promise<string> {
  const browser = createBrowser({ headers: { accept: 'text/html,application/xhtml+xml' } });
  const flow = await loginAtDevIdp(browser, protectedUrl, { username: 'demo', password: 'demo' });
  await flow.response.body?.cancel();
  const cookie = browser.cookie('mod_auth_openidc_session', protectedUrl)?.value;
  if (!cookie) throw new Error(`login through Apache at ${protectedUrl} failed: status ${flow.response.status}, no mod_auth_openidc_session cookie`);
  return cookie;
}

/**
 * The nginx `http {}` and `server {}` parts of the forward-auth peer (docs/forward-auth.md, with keep-alive
 * pools); `check`: the forward-auth listener as nginx's `server` takes it, `127.0.0.1:<port>` or `unix:<path>`.
 */
export function nginxForwardAuthConfig(options: { upstream: string; tokenHandler: string; check: string; targetPath: string }): { http: string; server: string } {
  const hostPort = (url: string): string => new URL(url).host;
  return {
    http: `
  upstream bench_api { server ${hostPort(options.upstream)}; keepalive 64; }
  upstream bench_th { server ${hostPort(options.tokenHandler)}; keepalive 16; }
  upstream bench_th_check { server ${options.check}; keepalive 64; }
`,
    server: `
    location /token-handler/v1/ {
      proxy_pass http://bench_th;
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location ${options.targetPath}/ {
      auth_request /_token_handler_check;
      auth_request_set $th_authorization $upstream_http_authorization;
      auth_request_set $th_cookie $upstream_http_cookie;
      proxy_set_header Authorization $th_authorization;
      proxy_set_header Cookie $th_cookie;
      proxy_set_header X-XSRF-TOKEN "";
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://bench_api/;
    }
    location = /_token_handler_check {
      internal;
      proxy_pass http://bench_th_check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_buffer_size 16k;
      proxy_buffers 4 16k;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
`,
  };
}

// ---------------------------------------------------------------------------------------------------
// A process and its descendants, from /proc (Linux): CPU time and RSS of a peer's master and workers
// ---------------------------------------------------------------------------------------------------

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    ticksPerSecond = Number(out.stdout.trim()) || 100;
  }
  return ticksPerSecond;
}

/** `pid` and all its descendants (empty when /proc has no such process). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    if (!existsSync(`/proc/${p}`)) return;
    out.push(p);
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      let children: string;
      try {
        children = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const child of children.split(' ').filter(Boolean)) visit(Number(child));
    }
  };
  visit(pid);
  return out;
}

/** CPU time (user + system) of the processes, µs. */
export function cpuMicrosOf(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) in parentheses: utime is field 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return (ticks * 1e6) / clockTicks();
}

/** Resident set size of the processes, bytes. */
export function rssOf(pids: number[]): number {
  let bytes = 0;
  for (const pid of pids) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) bytes += Number(match[1]) * 1024;
    } catch {
      // exited
    }
  }
  return bytes;
}
