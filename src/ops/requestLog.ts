import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

/**
 * One log line per request instead of Fastify's two ("incoming request" + "request completed"): the
 * completed line carries the request (through log.ts' redacting `req` serializer), the status and the
 * response time. It goes through the request's logger, so it carries the request id and honours a
 * route's `logLevel`: health probes and scrapes log at `warn`, so only their failures appear.
 * Every other Fastify log line (stream errors, not-found, ...) is unchanged.
 */
export class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const line = { req: request, res: reply, responseTime: Math.round(reply.elapsedTime * 10) / 10 };
    if (error) reply.log.error({ ...line, err: error }, 'request errored');
    else if (reply.statusCode >= 500) reply.log.warn(line, 'request completed');
    else reply.log.info(line, 'request completed');
  }
}
