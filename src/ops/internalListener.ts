/**
 * An internal listener: a second, plain-HTTP Fastify beside the app's main one, on its own address (the
 * metrics port, the forward-auth port), that the reverse proxy never exposes. It shares the app's logger
 * (a child tagged `listener: <name>`, no per-request lines), starts when the app becomes ready (so
 * `app.listen()` fails if its port is taken) and closes with the app, cutting its open connections.
 * What it serves and who may call it is the caller's: `setup` registers that on the new instance.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { AddressInfo } from 'node:net';

export interface InternalListenerOptions {
  /** Tags the listener's log lines (`listener: <name>`) and names it for `internalListenerOf`. */
  name: string;
  listen: { host: string; port: number };
  /** Router options of the listener's Fastify (e.g. a longer `maxParamLength`). */
  routerOptions?: FastifyServerOptions['routerOptions'];
  /** Registers what the listener serves (routes, hooks, error and not-found handlers). */
  setup: (server: FastifyInstance) => Promise<void>;
}

const listeners = new WeakMap<FastifyInstance, Map<string, FastifyInstance>>();

/** The internal listener `name` of an app, once the app is ready. */
export function internalListenerOf(app: FastifyInstance, name: string): FastifyInstance | undefined {
  return listeners.get(app)?.get(name);
}

/** Where the internal listener `name` of an app listens, once started. */
export function internalListenerAddress(app: FastifyInstance, name: string): AddressInfo | undefined {
  const address = internalListenerOf(app, name)?.server.address();
  return address && typeof address === 'object' ? address : undefined;
}

/** Starts the internal listener with the app (onReady) and closes it with the app (onClose). */
export function serveInternalListener(app: FastifyInstance, logger: FastifyBaseLogger, opts: InternalListenerOptions): void {
  const { name, listen } = opts;
  app.addHook('onReady', async () => {
    const server = Fastify({
      loggerInstance: logger.child({ listener: name }),
      logController: new LogController({ disableRequestLogging: true }),
      forceCloseConnections: true,
      ...(opts.routerOptions === undefined ? {} : { routerOptions: opts.routerOptions }),
    }) as unknown as FastifyInstance;
    await opts.setup(server);
    await server.listen({ host: listen.host, port: listen.port });
    let byName = listeners.get(app);
    if (!byName) listeners.set(app, (byName = new Map()));
    byName.set(name, server);
  });
  app.addHook('onClose', async () => {
    const server = listeners.get(app)?.get(name);
    listeners.get(app)?.delete(name);
    await server?.close();
  });
}
