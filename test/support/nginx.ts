/**
 * A real nginx (Debian's package) for deployment tests: started in the foreground by the test, on a free
 * port of 127.0.0.1, with a generated configuration in a temporary prefix, and stopped after. The test
 * gives the `server { ... }` body (locations, proxy_pass lines); `{{PORT}}` in it is replaced by nginx's
 * own port, so Host/X-Forwarded-Host lines can name it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './config.ts';

export const NGINX_BIN = process.env.TH_TEST_NGINX ?? '/usr/sbin/nginx';

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
   */
  full?: string;
  /** Extra lines for the `http { }` block (upstreams, maps). */
  http?: string;
  /** A fixed port (default: a free one). */
  port?: number;
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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
  const prefix = tempDir('th-nginx-');
  for (const dir of ['logs', 'tmp', 'tmp/client', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) mkdirSync(join(prefix, dir), { recursive: true });
  // A port taken between freePort() and nginx's bind fails the start: retry with another.
  for (let attempt = 0; ; attempt += 1) {
    const port = options.port ?? (await freePort());
    copyFileSync('/etc/nginx/mime.types', join(prefix, 'mime.types'));
    const config = options.full !== undefined ? options.full.replaceAll('{{PORT}}', String(port)).replaceAll('{{PREFIX}}', prefix) : `
daemon off;
master_process on;
worker_processes 1;
pid ${prefix}/nginx.pid;
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
    const file = join(prefix, 'nginx.conf');
    writeFileSync(file, config);
    const check = spawnSync(NGINX_BIN, ['-t', '-p', prefix, '-c', file], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`nginx rejected the generated configuration:\n${check.stderr}\n${config}`);
    const child: ChildProcess = spawn(NGINX_BIN, ['-p', prefix, '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const read = (name: string) => () => {
      try {
        return readFileSync(join(prefix, 'logs', name), 'utf8');
      } catch {
        return '';
      }
    };
    const deadline = Date.now() + 20_000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      const log = read('error.log')();
      if (attempt < 3 && options.port === undefined && /Address already in use/.test(log + stderr)) continue;
      throw new Error(`nginx did not start:\n${stderr}\n${log}`);
    }
    return {
      port,
      base: `http://127.0.0.1:${port}`,
      config,
      errorLog: read('error.log'),
      accessLog: read('access.log'),
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        // SIGQUIT: graceful shutdown; SIGKILL if it lingers.
        child.kill('SIGQUIT');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      },
    };
  }
}
