/**
 * WebSocket proxying for targets with `websocket: true`. The HTTP upgrade is handled on the server's
 * `upgrade` event (Fastify's routing never sees it): path, Origin and session are checked as for HTTP,
 * the upgrade is replayed to the upstream with the access token injected and our cookies removed, and
 * once the upstream switches protocols the two sockets are joined byte for byte. Frames are not parsed
 * or re-framed, so extensions (permessage-deflate) and subprotocols are negotiated end to end.
 */
import type { FastifyInstance } from 'fastify';
import { request as httpRequest, STATUS_CODES, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/types.ts';
import type { AppContext } from '../context.ts';
import { resolveCredential, type TargetPlan } from '../proxy/plan.ts';
import { prepareResponseHeaders, prepareUpstreamHeaders, type ForwardedFacts, type Headers } from '../security/headers.ts';
import { checkHost } from '../security/host.ts';
import { joinUpstreamPath, rawSubPath } from '../security/paths.ts';
import { StoreUnavailableError } from '../store/types.ts';

export function websocketProxy(app: FastifyInstance, ctx: AppContext, plans: readonly TargetPlan[]): void {
  if (plans.length === 0) return;
  // Longest mount path first, so `/api/orders` wins over `/api`.
  const ordered = [...plans].sort((a, b) => b.mountPath.length - a.mountPath.length);
  const trust = trustedPeer(ctx.config.trustProxy);
  const publicOrigin = ctx.config.publicUrl ? new URL(ctx.config.publicUrl).origin : undefined;
  const open = new Set<Duplex>();
  const server = app.server;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = req.url ?? '';
    let plan: TargetPlan | undefined;
    let subPath: string | undefined;
    for (const candidate of ordered) {
      subPath = rawSubPath(url, candidate.mountPath);
      if (subPath !== undefined) {
        plan = candidate;
        break;
      }
    }
    if (!plan || subPath === undefined) {
      // Another listener (a WebSocket plugin) may serve this path; when we are alone, nobody does.
      if (server.listenerCount('upgrade') === 1) reject(socket, 404, 'not_found', 'no WebSocket target at this path');
      return;
    }
    socket.on('error', () => socket.destroy());
    const chosen = plan;
    const facts = forwardedFacts(req, trust);
    // Upgrades bypass Fastify's hooks: the Host check of app.ts is repeated here.
    const host = checkHost(req.rawHeaders, facts.host);
    if (!host.ok) {
      reject(socket, 400, 'invalid_host', host.reason);
      return;
    }
    proxyUpgrade(ctx, chosen, req, socket, head, subPath, facts, publicOrigin, open).catch((err: unknown) => {
      if (err instanceof StoreUnavailableError) {
        app.log.error({ reason: err.message }, 'session store unavailable');
        reject(socket, 503, 'store_unavailable', 'the session store is unavailable; try again shortly');
        return;
      }
      app.log.error({ target: chosen.target.id, err }, 'WebSocket upgrade failed');
      reject(socket, 500, 'internal_error', 'an unexpected error occurred; see the service logs');
    });
  };

  server.on('upgrade', onUpgrade);
  // preClose: server.close() waits for every socket, and joined sockets are no longer the HTTP server's to close.
  app.addHook('preClose', async () => {
    server.off('upgrade', onUpgrade);
    for (const socket of open) socket.destroy();
  });
}

async function proxyUpgrade(
  ctx: AppContext,
  plan: TargetPlan,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  subPath: string,
  forwarded: ForwardedFacts,
  publicOrigin: string | undefined,
  open: Set<Duplex>,
): Promise<void> {
  const { target } = plan;
  const count = (status: number): void => ctx.metrics.proxyRequests.inc({ target: target.id, status: String(status) });
  if (req.method !== 'GET') return reject(socket, 405, 'method_not_allowed', 'a WebSocket upgrade is a GET');
  const joined = joinUpstreamPath(plan.base, subPath);
  if (!joined.ok) return reject(socket, 400, 'invalid_path', `the request path was refused: ${joined.reason}`);

  // Cross-site WebSocket hijacking: a browser always sends Origin on a WebSocket handshake, and only
  // our own origin and the client's allowed origins may open one with the user's cookies.
  const origin = single(req.headers.origin);
  const own = publicOrigin ?? `${forwarded.proto}://${forwarded.host}`;
  const tenant = plan.tenantOf(single(req.headers[plan.tenantHeader]));
  if (origin === undefined || !plan.csrfOrigins(tenant.ok ? tenant.tenant : null, own).has(origin)) {
    ctx.metrics.csrfRejections.inc({ reason: 'websocket_origin' });
    return reject(socket, 403, 'origin_not_allowed', `WebSocket connections from origin ${origin ?? '(none)'} are not allowed`);
  }

  const secure = ctx.cookies.secure(forwarded.proto === 'https');
  const cookieName = secure ? plan.sessionCookie.secure : plan.sessionCookie.insecure;
  const cookieHeader = single(req.headers.cookie);
  const credential = await resolveCredential(ctx, plan, cookieHeader ? cookieValue(cookieHeader, cookieName) : undefined, tenant);
  if (!credential.ok) return reject(socket, credential.status, credential.error, credential.detail);
  if (socket.destroyed) return;

  const upgrade = single(req.headers.upgrade) ?? 'websocket';
  // With --public_url, the upstream hears of that host, never of what the client put in Host.
  const upstreamFacts = publicOrigin ? { ...forwarded, proto: new URL(publicOrigin).protocol.slice(0, -1), host: new URL(publicOrigin).host } : forwarded;
  const headers = prepareUpstreamHeaders({ ...req.headers } as Headers, plan.upstreamHeaders, credential.token, upstreamFacts);
  headers.connection = 'Upgrade';
  headers.upgrade = upgrade;

  const upstreamUrl = new URL(joined.path + queryOf(req.url ?? ''), plan.base.origin);
  const send = upstreamUrl.protocol === 'https:' ? httpsRequest : httpRequest;
  let settled = false;
  const upstream: ClientRequest = send(upstreamUrl, { method: 'GET', headers: headers as Record<string, string | string[]>, agent: false });
  upstream.setTimeout(target.timeoutMs, () => {
    if (settled) return;
    settled = true;
    count(504);
    upstream.destroy();
    reject(socket, 504, 'upstream_timeout', `target "${target.id}" did not answer within ${target.timeoutMs} ms`);
  });
  socket.once('close', () => {
    if (!settled) upstream.destroy();
  });
  upstream.on('error', () => {
    if (settled) return;
    settled = true;
    count(502);
    reject(socket, 502, 'upstream_unavailable', `target "${target.id}" could not be reached`);
  });
  upstream.on('response', (res) => {
    // The upstream refused the upgrade (401, 404, ...): relay its answer and close.
    if (settled) return res.destroy();
    settled = true;
    count(res.statusCode ?? 502);
    const filtered = prepareResponseHeaders({ ...res.headers } as Headers, plan.responseHeaders);
    filtered.connection = 'close';
    socket.write(head_(res.statusCode ?? 502, res.statusMessage, filtered));
    res.pipe(socket);
    res.on('error', () => socket.destroy());
  });
  upstream.on('upgrade', (res, upstreamSocket: Socket, upstreamHead: Buffer) => {
    if (settled || socket.destroyed) {
      upstreamSocket.destroy();
      return;
    }
    settled = true;
    count(101);
    const filtered = prepareResponseHeaders({ ...res.headers } as Headers, plan.responseHeaders);
    filtered.connection = 'Upgrade';
    filtered.upgrade = single(res.headers.upgrade) ?? upgrade;
    upstreamSocket.setTimeout(0);
    upstreamSocket.setNoDelay(true);
    (socket as Socket).setTimeout?.(0);
    (socket as Socket).setNoDelay?.(true);
    socket.write(head_(101, 'Switching Protocols', filtered));
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    if (head.length > 0) upstreamSocket.write(head);
    join(socket, upstreamSocket, open);
  });
  upstream.end();
}

/** Joins two sockets both ways; when either side ends or fails, both go. */
function join(client: Duplex, upstream: Duplex, open: Set<Duplex>): void {
  open.add(client);
  open.add(upstream);
  const close = (): void => {
    open.delete(client);
    open.delete(upstream);
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
  client.pipe(upstream);
  upstream.pipe(client);
}

function head_(status: number, message: string | undefined, headers: Headers): string {
  let out = `HTTP/1.1 ${status} ${message ?? STATUS_CODES[status] ?? ''}\r\n`;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out += `${name}: ${v}\r\n`;
    else out += `${name}: ${String(value)}\r\n`;
  }
  return `${out}\r\n`;
}

/** Answers a refused upgrade with problem+json and closes the socket. */
function reject(socket: Duplex, status: number, error: string, detail: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ type: 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, error, detail });
  socket.end(
    head_(status, undefined, {
      'content-type': 'application/problem+json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'cache-control': 'no-store',
      connection: 'close',
    }) + body,
  );
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function queryOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? '' : url.slice(q);
}

/** One cookie's value from a Cookie header (percent-decoded as @fastify/cookie does). */
export function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!value.includes('%')) return value;
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}

/**
 * Whether the connection's peer is a trusted proxy, after --trust_proxy (as Fastify decides it for
 * request.protocol and request.host): true, false, or a list of addresses, CIDRs and the names
 * loopback, linklocal, uniquelocal.
 */
function trustedPeer(setting: Config['trustProxy']): (address: string | undefined) => boolean {
  if (setting === true) return () => true;
  if (setting === false || setting.length === 0) return () => false;
  const list = new BlockList();
  const ranges: Record<string, [string, number, 'ipv4' | 'ipv6'][]> = {
    loopback: [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']],
    linklocal: [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']],
    uniquelocal: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']],
  };
  for (const item of setting) {
    const named = ranges[item];
    if (named) {
      for (const [net, prefix, type] of named) list.addSubnet(net, prefix, type);
      continue;
    }
    const [address = '', prefix] = item.split('/');
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return (address) => {
    if (!address) return false;
    const v4 = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    return list.check(v4, isIP(v4) === 6 ? 'ipv6' : 'ipv4');
  };
}

function lastEntry(value: string | string[] | undefined): string | undefined {
  const text = single(value);
  if (text === undefined) return undefined;
  const comma = text.lastIndexOf(',');
  return (comma < 0 ? text : text.slice(comma + 1)).trim();
}

function forwardedFacts(req: IncomingMessage, trusted: (address: string | undefined) => boolean): ForwardedFacts {
  const socket = req.socket as Socket & { encrypted?: boolean };
  const clientAddress = socket.remoteAddress;
  let proto = socket.encrypted ? 'https' : 'http';
  let host = single(req.headers.host) ?? '';
  if (trusted(clientAddress)) {
    proto = lastEntry(req.headers['x-forwarded-proto']) ?? proto;
    host = lastEntry(req.headers['x-forwarded-host']) ?? host;
  }
  return { clientAddress, proto, host };
}
