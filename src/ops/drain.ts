import type { FastifyInstance } from 'fastify';

/**
 * Graceful shutdown for keep-alive clients. `app.close()` stops accepting connections and closes the idle
 * ones (`forceCloseConnections: 'idle'`), but a connection busy with an in-flight request becomes idle only
 * after its response, and then nothing closes it: the server would wait for the client's keep-alive to
 * lapse (Fastify's default is 72 s) and the process would outlive its grace period. Answering every
 * response sent while draining with `Connection: close` makes Node end each socket right after it.
 */
export function closeConnectionsWhenDraining(app: FastifyInstance): void {
  let draining = false;
  app.addHook('preClose', async () => {
    draining = true;
  });
  // Callback style: it runs on every response, where an async hook would cost a promise each time.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (draining && !reply.raw.headersSent) reply.header('connection', 'close');
    done(null, payload);
  });
}
