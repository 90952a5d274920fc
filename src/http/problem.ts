import type { FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';

/**
 * The one writer of RFC 9457 problem+json answers, for Fastify replies (`sendProblem`) and for sockets no
 * reply exists for (`rawProblemResponse`: requests Node's parser refused, refused WebSocket upgrades).
 */

/** The problem object itself. */
export function problem(status: number, error: string, detail: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'about:blank', title: title(status), status, error, detail, ...extra };
}

/**
 * Sends an RFC 9457 problem+json body. `error` is a stable machine-readable code an app can act on
 * (`login_required`, `csrf_failed`, ...); `detail` is for humans and never holds a token or secret.
 */
export function sendProblem(
  reply: FastifyReply,
  status: number,
  error: string,
  detail: string,
  extra: Record<string, unknown> = {},
): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(problem(status, error, detail, extra));
}

/** A complete problem+json HTTP/1.1 response that closes the connection, for a raw socket. */
export function rawProblemResponse(status: number, error: string, detail: string): string {
  const body = JSON.stringify(problem(status, error, detail));
  return (
    `HTTP/1.1 ${status} ${title(status)}\r\n` +
    'Content-Type: application/problem+json; charset=utf-8\r\n' +
    'Cache-Control: no-store\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

function title(status: number): string {
  switch (status) {
    case 400: return 'Bad Request';
    case 401: return 'Unauthorized';
    case 403: return 'Forbidden';
    case 404: return 'Not Found';
    case 405: return 'Method Not Allowed';
    case 413: return 'Content Too Large';
    case 429: return 'Too Many Requests';
    case 431: return 'Request Header Fields Too Large';
    case 502: return 'Bad Gateway';
    case 503: return 'Service Unavailable';
    case 504: return 'Gateway Timeout';
    default: return STATUS_CODES[status] ?? 'Error';
  }
}
