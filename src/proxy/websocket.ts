/**
 * WebSocket proxying for targets with `websocket: true`. The HTTP upgrade is handled on the server's
 * `upgrade` event (Fastify's routing never sees it): path, Origin and session are checked as for HTTP,
 * the upgrade is replayed to the upstream with the access token injected and our cookies removed, and
 * once the upstream switches protocols the two sockets are joined byte for byte. Frames are not parsed
 * or re-framed, so extensions (permessage-deflate) and subprotocols are negotiated end to end.
 *
 * Only `Upgrade: websocket` to the path of a WebSocket target is switched. Every other request carrying
 * an Upgrade header (h2c, a WebSocket upgrade elsewhere) is an ordinary HTTP request: the server's
 * `shouldUpgradeCallback` hands it to Fastify's routing, and Upgrade, being hop-by-hop, goes no further.
 * (Tunnelled, `Upgrade: h2c` carried raw bytes, with the bearer token, to any path of the upstream.)
 */
import type { FastifyInstance } from 'fastify';
import { request as httpRequest, STATUS_CODES, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AppContext } from '../context.ts';
import { statusLabel } from '../metrics.ts';
import { resolveCredential, type TargetPlan } from './plan.ts';
import type { TargetRoute } from './http.ts';
import type { TargetTable } from './table.ts';
import { prepareResponseHeaders, prepareUpstreamHeaders, type ForwardedFacts, type Headers } from './headers.ts';
import { checkHost } from '../security/host.ts';
import { joinUpstreamPath, rawSubPath } from './paths.ts';
import { StoreUnavailableError } from '../store/types.ts';
import { forwardedProtoProblem } from '../http/origin.ts';
import { rawProblemResponse } from '../http/problem.ts';
import { activeTracing, redactedQuery, type ClientSpan, type ServerSpan } from '../ops/tracing.ts';

export function websocketProxy(app: FastifyInstance, ctx: AppContext, table: TargetTable<TargetRoute>): void {
  const open = new Set<Duplex>();
  const server = app.server;

  // The targets in force are looked up per upgrade (a reload can add or remove WebSocket targets).
  const route = (req: IncomingMessage): { plan: TargetPlan; subPath: string } | undefined => {
    if (!asksForWebSocket(req)) return undefined;
    const url = req.url ?? '';
    // Longest mount path first (the table's order), so `/api/orders` wins over `/api`.
    for (const mounted of table.mounted) {
      if (!mounted.target.websocket || !mounted.route) continue;
      const subPath = rawSubPath(url, mounted.mountPath);
      if (subPath !== undefined) return { plan: mounted.route.plan, subPath };
    }
    return undefined;
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const routed = route(req);
    if (!routed) {
      reject(socket, 400, 'upgrade_not_supported', 'only a WebSocket upgrade (Upgrade: websocket) to a WebSocket target switches protocols; send this request without Upgrade');
      return;
    }
    socket.on('error', () => socket.destroy());
    const { plan: chosen, subPath } = routed;
    const requested = ctx.origins.requested(req);
    // Upgrades bypass Fastify's hooks: the Host and scheme checks of app.ts are repeated here.
    const host = checkHost(req.rawHeaders, requested.host);
    if (!host.ok) {
      reject(socket, 400, 'invalid_host', host.reason);
      return;
    }
    const proto = forwardedProtoProblem(requested.proto);
    if (proto !== undefined) {
      reject(socket, 400, 'invalid_forwarded_proto', proto);
      return;
    }
    const clientAddress = req.socket?.remoteAddress;
    const facts: ForwardedFacts = { clientAddress, peerTrusted: ctx.origins.trustsPeer(clientAddress), proto: requested.proto, host: requested.host };
    proxyUpgrade(ctx, chosen, req, socket, head, subPath, facts, open).catch((err: unknown) => {
      if (err instanceof StoreUnavailableError) {
        app.log.error({ reason: err.message }, 'session store unavailable');
        reject(socket, 503, 'store_unavailable', 'the session store is unavailable; try again shortly');
        return;
      }
      app.log.error({ target: chosen.target.id, err }, 'WebSocket upgrade failed');
      reject(socket, 500, 'internal_error', 'an unexpected error occurred; see the service logs');
    });
  };

  // Upgrades are taken over once a WebSocket target is configured (at startup or by a reload).
  let installed = false;
  const install = (): void => {
    if (installed || !table.mounted.some((mounted) => mounted.target.websocket)) return;
    installed = true;
    // Node 24.9+: upgrades we do not switch are served as plain HTTP. On an older Node every upgrade
    // arrives below and the others are refused with a 400.
    // (@types/node does not describe the property yet.)
    (server as { shouldUpgradeCallback?: (req: IncomingMessage) => boolean }).shouldUpgradeCallback = (req) => route(req) !== undefined;
    server.on('upgrade', onUpgrade);
  };
  install();
  table.onSwap(install);
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
  open: Set<Duplex>,
): Promise<void> {
  const { target } = plan;
  const count = (status: number): void => ctx.metrics.proxyRequests.inc({ target: target.id, status: statusLabel(status) });
  if (req.method !== 'GET') return reject(socket, 405, 'method_not_allowed', 'a WebSocket upgrade is a GET');
  const joined = joinUpstreamPath(plan.base, subPath);
  if (!joined.ok) return reject(socket, 400, 'invalid_path', `the request path was refused: ${joined.reason}`);

  // Cross-site WebSocket hijacking: a browser always sends Origin on a WebSocket handshake, and only
  // our own origin and the client's allowed origins may open one with the user's cookies.
  const origin = single(req.headers.origin);
  const own = ctx.origins.ofRaw(req);
  const tenant = plan.tenantOf(single(req.headers[plan.tenantHeader]));
  const originAllowed = (tenantId: string | null): boolean => origin !== undefined && plan.csrfOrigins(tenantId, own.origin).has(origin);
  // Without the tenant header, the origins are those of the session's tenant: checked once it is known.
  const originLater = plan.tenantFromSession(tenant);
  if (!originLater && !originAllowed(tenant.ok ? tenant.tenant : null)) {
    ctx.metrics.csrfRejections.inc({ reason: 'websocket_origin' });
    return reject(socket, 403, 'origin_not_allowed', `WebSocket connections from origin ${origin ?? '(none)'} are not allowed`);
  }

  const secure = ctx.cookies.secure(forwarded.proto === 'https');
  const cookieName = secure ? plan.sessionCookie.secure : plan.sessionCookie.insecure;
  const cookieHeader = single(req.headers.cookie);
  const credential = await resolveCredential(ctx, plan, cookieHeader ? cookieValue(cookieHeader, cookieName) : undefined, tenant);
  if (originLater && !originAllowed(credential.ok ? (credential.session?.record.tenant ?? null) : null)) {
    ctx.metrics.csrfRejections.inc({ reason: 'websocket_origin' });
    return reject(socket, 403, 'origin_not_allowed', `WebSocket connections from origin ${origin ?? '(none)'} are not allowed`);
  }
  if (!credential.ok) return reject(socket, credential.status, credential.error, credential.detail);
  if (socket.destroyed) return;

  const upgrade = 'websocket';
  // With --public_url, the upstream hears of that host, never of what the client put in Host.
  const upstreamFacts = { ...forwarded, proto: own.proto, host: own.host };
  const headers = prepareUpstreamHeaders({ ...req.headers } as Headers, plan.upstreamHeaders, credential.token, upstreamFacts);
  headers.connection = 'Upgrade';
  headers.upgrade = upgrade;

  const upstreamUrl = new URL(joined.path + queryOf(req.url ?? ''), plan.base.origin);
  // Tracing on: the handshake's spans (it bypasses Fastify's hooks), the upstream's parent the client span.
  const spans = activeTracing() === undefined ? undefined : handshakeSpans(req, plan, upstreamUrl);
  if (spans) {
    headers.traceparent = spans.client.traceparent;
    if (spans.client.tracestate === undefined) delete headers.tracestate;
    else headers.tracestate = spans.client.tracestate;
  }
  const end = (status: number, failure?: string): void => {
    if (!spans) return;
    for (const span of [spans.client, spans.server]) {
      span.setAttribute('http.response.status_code', status);
      if (failure !== undefined) span.fail(failure);
      span.end();
    }
  };
  const send = upstreamUrl.protocol === 'https:' ? httpsRequest : httpRequest;
  let settled = false;
  const upstream: ClientRequest = send(upstreamUrl, { method: 'GET', headers: headers as Record<string, string | string[]>, agent: false });
  upstream.setTimeout(target.timeoutMs, () => {
    if (settled) return;
    settled = true;
    count(504);
    end(504, 'timeout');
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
    end(502, 'unavailable');
    reject(socket, 502, 'upstream_unavailable', `target "${target.id}" could not be reached`);
  });
  upstream.on('response', (res) => {
    // The upstream refused the upgrade (401, 404, ...): relay its answer and close.
    if (settled) return res.destroy();
    settled = true;
    count(res.statusCode ?? 502);
    end(res.statusCode ?? 502);
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
    end(101);
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

/** The handshake's server span (continuing a valid traceparent) and its upstream call's client span. */
function handshakeSpans(req: IncomingMessage, plan: TargetPlan, upstreamUrl: URL): { server: ServerSpan; client: ClientSpan } {
  const tracing = activeTracing()!;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const route = `${plan.mountPath}/*`;
  const server = tracing.startServer(`GET ${route}`, single(req.headers.traceparent), single(req.headers.tracestate), {
    'http.request.method': 'GET',
    'http.route': route,
    'url.path': q < 0 ? url : url.slice(0, q),
    ...(q >= 0 && { 'url.query': redactedQuery(url.slice(q)) }),
  });
  const client = tracing.startClient(server, 'GET', {
    'http.request.method': 'GET',
    'server.address': upstreamUrl.hostname,
    'server.port': upstreamUrl.port === '' ? (upstreamUrl.protocol === 'https:' ? 443 : 80) : Number(upstreamUrl.port),
    'url.full': `${upstreamUrl.origin}${upstreamUrl.pathname}${upstreamUrl.search.length > 1 ? `?${redactedQuery(upstreamUrl.search)}` : ''}`,
    'token_handler.target': plan.target.id,
  });
  return { server, client };
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
  socket.end(rawProblemResponse(status, error, detail));
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `Upgrade: websocket` (RFC 6455 §4.1; the token is case-insensitive), and no other protocol. */
function asksForWebSocket(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket';
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
