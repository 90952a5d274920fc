import type { FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';

/**
 * go-token-handler's error body, for its routes (/login, /callback, /logout, /userinfo) and its `proxies:`
 * targets: a frontend written for it reads `message` (and `code`), never an RFC 9457 problem. Same status
 * codes as our problem+json answers; only the shape differs. `error`, our stable machine-readable code
 * (`login_required`, `csrf_failed`...), is added beside Go's four keys: a Go frontend ignores it.
 *
 *   { "code": 401, "status": "Unauthorized", "message": "...", "timestamp": "2026-01-01T00:00:00.000Z", "error": "login_required" }
 */
export function goErrorBody(
  status: number,
  message: string,
  error?: string,
): { code: number; status: string; message?: string; timestamp: string; error?: string } {
  return {
    code: status,
    status: STATUS_CODES[status] ?? '',
    // Go omitted an empty message (`json:"message,omitempty"`).
    ...(message !== '' && { message }),
    timestamp: new Date().toISOString(),
    ...(error !== undefined && { error }),
  };
}

const PROBLEM_TYPE = 'application/problem+json';

/**
 * An onSend hook that rewrites this service's own problem+json answers (sendProblem, the error and
 * not-found handlers) into Go's shape. An upstream's body is never touched: reply-from hands it over as a
 * Buffer or a stream, while our problems arrive here serialized, as a string.
 */
export function goErrorShape(_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
  const type = reply.getHeader('content-type');
  if (typeof payload !== 'string' || typeof type !== 'string' || !type.startsWith(PROBLEM_TYPE)) {
    done(null, payload);
    return;
  }
  let detail = '';
  let error: string | undefined;
  try {
    const parsed = JSON.parse(payload) as { detail?: unknown; error?: unknown };
    if (typeof parsed.detail === 'string') detail = parsed.detail;
    if (typeof parsed.error === 'string') error = parsed.error;
  } catch {
    // Not ours after all: leave it.
    done(null, payload);
    return;
  }
  const body = JSON.stringify(goErrorBody(reply.statusCode, detail, error));
  reply.header('content-type', 'application/json; charset=utf-8').header('x-content-type-options', 'nosniff');
  reply.removeHeader('content-length');
  done(null, body);
}
