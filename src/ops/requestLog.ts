import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import { symbols } from 'pino';
import { kAccessLineFormat, logSafeUrl } from '../log.ts';
import { clientAddress } from './clientAddress.ts';

/** pino's internals the fast path reads; all public through `pino.symbols`. */
interface PinoInternals {
  isLevelEnabled(level: string): boolean;
  [kAccessLineFormat]?: true;
  [symbols.streamSym]: { write(line: string): unknown; [key: symbol]: unknown };
  [symbols.chindingsSym]: string;
  [symbols.lsCacheSym]: Record<number, string>;
  [symbols.timeSym]: () => string;
}

const INFO = 30;
const MESSAGE = ',"msg":"request completed"}\n';

/**
 * One log line per request instead of Fastify's two ("incoming request" + "request completed"): the
 * completed line carries the request (method, URL with secret query values redacted, host, client
 * address), the status and the response time. It goes through the request's logger, so it carries the
 * request id and honours a route's `logLevel`: health probes and scrapes log at `warn`, so only their
 * failures appear. Every other Fastify log line (stream errors, not-found, ...) is unchanged.
 *
 * The line at `info` is the one line every proxied request writes: for loggers made by `createLogger`
 * it is assembled here, the same JSON pino would write with log.ts' serializers, without pino's
 * per-call work (hook, redaction pass over paths that cannot occur in it, serializer dispatch) that
 * made it a tenth of the proxy's CPU time (issue #9, bench/RESULTS.md).
 */
export class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}

  /**
   * Runs when the response has finished, outside any handler that could catch: whatever fails here is
   * reported on a line of its own (with the request id) and goes no further, so logging a request can
   * never take the process down (issue #17).
   */
  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    try {
      this.#completed(error, request, reply);
    } catch (failure) {
      reportLogFailure(request, failure, error);
    }
  }

  #completed(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const log = reply.log;
    if (!error && reply.statusCode < 500) {
      if (writeCompletedLine(log, request, reply)) return;
    }
    const line = { req: request, res: reply, responseTime: responseTime(reply) };
    if (error) log.error({ ...line, err: error }, 'request errored');
    else if (reply.statusCode >= 500) log.warn(line, 'request completed');
    else log.info(line, 'request completed');
  }
}

/** The line of a request whose own line could not be written: through pino if it can, else straight to stderr. */
function reportLogFailure(request: FastifyRequest, failure: unknown, error: Error | null | undefined): void {
  const reason = failure instanceof Error ? failure.message : String(failure);
  try {
    request.log.error({ reason, requestError: error?.message }, 'could not log the completed request');
  } catch {
    process.stderr.write(`${JSON.stringify({ level: 50, time: Date.now(), reqId: request.id, reason, msg: 'could not log the completed request' })}\n`);
  }
}

function responseTime(reply: FastifyReply): number {
  return Math.round(reply.elapsedTime * 10) / 10;
}

/** Writes the `request completed` line itself; false when the logger is not one it knows the format of. */
export function writeCompletedLine(log: FastifyBaseLogger, request: FastifyRequest, reply: FastifyReply): boolean {
  const pino = log as unknown as PinoInternals;
  if (pino[kAccessLineFormat] !== true) return false;
  // A route's logLevel (health probes at `warn`) or the service's: then there is no line, as with pino.
  if (!pino.isLevelEnabled('info')) return true;
  const stream = pino[symbols.streamSym];
  // pino.multistream wants each line's level and object beside it: leave those to pino.
  if (stream[symbols.needsMetadataGsym] === true) return false;
  const url = logSafeUrl(request.url);
  stream.write(
    `${pino[symbols.lsCacheSym][INFO]}${pino[symbols.timeSym]()}${pino[symbols.chindingsSym]}` +
      `,"req":{"method":${JSON.stringify(request.method)}${field('url', url)}${field('host', request.host)}${field('remoteAddress', clientAddress(request))}}` +
      `,"res":{"statusCode":${reply.statusCode}},"responseTime":${responseTime(reply)}${MESSAGE}`,
  );
  return true;
}

/** `,"name":<value as JSON>`, or nothing for a value that is not a string (as pino leaves out undefined). */
function field(name: string, value: unknown): string {
  return typeof value === 'string' ? `,"${name}":${JSON.stringify(value)}` : '';
}
