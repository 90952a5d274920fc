/**
 * A real nginx (Debian's package) for deployment tests: started in the foreground by the test, on a free
 * port of 127.0.0.1 (nginx cannot listen on port 0: a port taken by another process before nginx bound it
 * is retried with another), with a generated configuration in a temporary prefix, and stopped after. The test
 * gives the `server { ... }` body (locations, proxy_pass lines); `{{PORT}}` in it is replaced by nginx's
 * own port, so Host/X-Forwarded-Host lines can name it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './config.ts';
import { onFreePort } from './ports.ts';

/** Kept for bench/peers.ts; a server started on it should go through `onFreePort` (test/support/ports.ts). */
export { freePort } from './ports.ts';

export const NGINX_BIN = process.env.TH_TEST_NGINX ?? '/usr/sbin/nginx';

/** The group of nginx's workers when its master runs as root: Debian's default `user nobody;` is nobody:nogroup. */
const NGINX_WORKER_GID = 65534;

/**
 * A directory for a Unix socket that nginx's workers can connect to, set up as docs/forward-auth.md tells
 * operators to: group-owned by the workers' group and setgid (a socket created inside gets that group, and
 * with mode 0660 the workers may connect), its parent searchable. Run as root, nginx's workers are
 * nobody:nogroup; otherwise they run as this user, who owns the socket anyway.
 */
export function nginxSocketDir(prefix = 'th-socket-'): string {
  const parent = tempDir(prefix);
  chmodSync(parent, 0o711); // (mkdtemp makes it 0700)
  const dir = join(parent, 'run');
  mkdirSync(dir);
  if (process.getuid?.() === 0) chownSync(dir, 0, NGINX_WORKER_GID);
  chmodSync(dir, 0o2750);
  return dir;
}

/** Why nginx cannot be used here, or undefined when it can. */
export function probeNginx(): string | undefined {
  if (!existsSync(NGINX_BIN)) return `${NGINX_BIN} not found (apt-get install nginx, or set TH_TEST_NGINX)`;
  const version = spawnSync(NGINX_BIN, ['-v'], { encoding: 'utf8' });
  if (version.status !== 0) return `${NGINX_BIN} -v failed: ${version.stderr}`;
  return undefined;
}

export interface Nginx {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly base: string;
  /** The generated nginx.conf, for failure messages. */
  readonly config: string;
  /** nginx's error log so far. */
  errorLog(): string;
  /** nginx's access log so far. */
  accessLog(): string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** The body of the `server { }` block (without `listen`): locations, proxy settings. `{{PORT}}` = nginx's port. */
  server?: string;
  /**
   * Instead of `server`: a whole nginx.conf (a documented example made runnable). `{{PORT}}` = nginx's port,
   * `{{PREFIX}}` = its temporary prefix (logs/, tmp/ and a copy of Debian's mime.types beside nginx.conf).
   * It must set `pid {{PREFIX}}/nginx.pid;` (how the start tells that nginx itself bound the port).
   */
  full?: string;
  /** Extra lines for the `http { }` block (upstreams, maps). */
  http?: string;
  /**
   * A fixed port (default: a free one, another if it was taken before nginx bound it). With a fixed port
   * nobody retries: a port taken meanwhile fails the start with "Address already in use" in the error
   * (`isAddressInUse`), for the caller to start again on another (`onFreePort`).
   */
  port?: number;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startNginx(options: NginxOptions): Promise<Nginx> {
  if (options.port !== undefined) return startNginxOn(options.port, options);
  return onFreePort((port) => startNginxOn(port, options));
}

async function startNginxOn(port: number, options: NginxOptions): Promise<Nginx> {
  const prefix = tempDir('th-nginx-');
  for (const dir of ['logs', 'tmp', 'tmp/client', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) mkdirSync(join(prefix, dir), { recursive: true });
  copyFileSync('/etc/nginx/mime.types', join(prefix, 'mime.types'));
  const pidFile = join(prefix, 'nginx.pid');
  const config = options.full !== undefined ? options.full.replaceAll('{{PORT}}', String(port)).replaceAll('{{PREFIX}}', prefix) : `
daemon off;
master_process on;
worker_processes 1;
pid ${pidFile};
error_log ${prefix}/logs/error.log info;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log ${prefix}/logs/access.log;
  client_body_temp_path ${prefix}/tmp/client;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  ${(options.http ?? '').replaceAll('{{PORT}}', String(port))}
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    ${(options.server ?? '').replaceAll('{{PORT}}', String(port))}
  }
}
`;
  if (!config.includes(`pid ${pidFile};`)) throw new Error(`the nginx configuration must set "pid {{PREFIX}}/nginx.pid;":\n${config}`);
  const file = join(prefix, 'nginx.conf');
  writeFileSync(file, config);
  const check = spawnSync(NGINX_BIN, ['-t', '-p', prefix, '-c', file], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx rejected the generated configuration:\n${check.stderr}\n${config}`);
  const child: ChildProcess = spawn(NGINX_BIN, ['-p', prefix, '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const read = (name: string) => () => {
    try {
      return readFileSync(join(prefix, 'logs', name), 'utf8');
    } catch {
      return '';
    }
  };
  // Up when nginx has written its pid file, which it does only once it has bound its listening sockets: a
  // connection alone could be another process's, one that took the port while nginx was still trying to
  // bind it (it tries for about 2.5 s, then exits with "Address already in use").
  const ownsPort = (): boolean => {
    try {
      return readFileSync(pidFile, 'utf8').trim() === String(child.pid);
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 20_000;
  let up = false;
  while (Date.now() < deadline && !gone()) {
    if (ownsPort() && (await canConnect(port))) {
      up = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!up) {
    if (!gone()) child.kill('SIGKILL');
    await exited;
    throw new Error(`nginx did not start on port ${port}:\n${stderr}\n${read('error.log')()}`);
  }
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    config,
    errorLog: read('error.log'),
    accessLog: read('access.log'),
    async stop() {
      if (gone()) return;
      // SIGQUIT: graceful shutdown; SIGKILL if it lingers.
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
