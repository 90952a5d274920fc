/**
 * Every refusal speaks RFC 9457 problem+json, also the ones Fastify and Node produce before a route runs:
 * a request Node's parser refuses (smuggling attempts, bare CR/LF in headers, oversized header sections),
 * a URL the router cannot decode (`/%80`), and Fastify's own 4xx errors (415, body too large, bad JSON),
 * whose codes are mapped to stable, documented names instead of leaking `fst_err_*` internals.
 */
import type { Socket } from 'node:net';
import { rawProblemResponse } from '../http/problem.ts';

/** Stable `error` names for the Fastify error codes a client can provoke. */
const FRAMEWORK_ERROR_NAMES: Record<string, string> = {
  FST_ERR_BAD_URL: 'invalid_path',
  FST_ERR_MAX_PARAM_LENGTH: 'invalid_path',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_body',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_body',
  FST_ERR_VALIDATION: 'invalid_request',
};

const STATUS_ERROR_NAMES: Record<number, string> = {
  400: 'bad_request',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'request_header_fields_too_large',
};

/** The `error` member of the problem for a 4xx error thrown by Fastify or a plugin. */
export function clientErrorName(status: number, code: string | undefined): string {
  if (code !== undefined) {
    const mapped = FRAMEWORK_ERROR_NAMES[code];
    if (mapped !== undefined) return mapped;
    // Anything else from Fastify is named by its status: its codes are not part of our API.
    if (code.startsWith('FST_')) return STATUS_ERROR_NAMES[status] ?? 'bad_request';
    if (/^[a-z][a-z0-9_]{0,63}$/i.test(code)) return code.toLowerCase();
  }
  return STATUS_ERROR_NAMES[status] ?? 'bad_request';
}

/**
 * Fastify `clientErrorHandler`: Node's HTTP parser refused the request (llhttp is strict: both
 * Transfer-Encoding and Content-Length, duplicate Content-Length, an unknown transfer coding, bare CR or LF,
 * whitespace before a colon, obs-fold, an oversized header section...). Nothing was routed; the connection
 * is closed after the answer, so whatever followed the bad request on it (a smuggled one) is never read.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let response: string;
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    response = rawProblemResponse(431, 'request_header_fields_too_large', 'the request header section is larger than the configured limit (--max_header_size)');
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    response = rawProblemResponse(408, 'request_timeout', 'the request was not received in time');
  } else {
    response = rawProblemResponse(400, 'malformed_request', 'the request is not valid HTTP/1.1');
  }
  // As Node's and Fastify's default handlers: write what fits, then close the connection.
  if (socket.writable) socket.write(response);
  socket.destroy();
}
