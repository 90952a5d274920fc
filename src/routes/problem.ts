import type { FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';

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
    .send({ type: 'about:blank', title: title(status), status, error, detail, ...extra });
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
