/**
 * An internal listener: a second, plain-HTTP Fastify beside the app's main one, on its own address (the
 * metrics port, the forward-auth port), that the reverse proxy never exposes. It shares the app's logger
 * (a child tagged `listener: <name>`, no per-request lines), starts when the app becomes ready (so
 * `app.listen()` fails if its port is taken) and closes with the app, cutting its open connections.
 * What it serves and who may call it is the caller's: `setup` registers that on the new instance.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import cluster from 'node:cluster';
import { chmod } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { isSocketAddress } from '../config/parsers.ts';
import type { InternalListenAddress } from '../config/types.ts';
import { clearStaleSocket, worldConnectable } from './unixSocket.ts';

/** The mode of an internal listener's Unix socket unless told otherwise: its owner and group may connect. */
export const DEFAULT_SOCKET_MODE = 0o660;

export interface InternalListenerOptions {
  /** Tags the listener's log lines (`listener: <name>`) and names it for `internalListenerOf`. */
  name: string;
  /** A TCP address, or a Unix domain socket (`{ path }`). */
  listen: InternalListenAddress;
  /** The Unix socket's file mode; DEFAULT_SOCKET_MODE when absent. Not used for a TCP address. */
  socketMode?: number;
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

/** Where the internal listener `name` of an app listens, once started (undefined for a Unix socket). */
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
    if (isSocketAddress(listen)) {
      // A socket left by a process that did not close it is removed first, a live one is an error. In a
      // worker group the primary has done that before forking (src/main.ts) and holds the socket the
      // workers share: a worker finding it live is expected.
      if (!cluster.isWorker) await clearStaleSocket(listen.path);
      await server.listen({ path: listen.path });
      const mode = opts.socketMode ?? DEFAULT_SOCKET_MODE;
      // Created with the mode the process's umask allows; given the configured one before anyone is told it listens.
      await chmod(listen.path, mode);
      if (worldConnectable(mode)) {
        server.log.warn({ path: listen.path, mode: mode.toString(8) }, 'every local user may connect to this socket (its mode grants write to others)');
      }
    } else {
      await server.listen({ host: listen.host, port: listen.port });
    }
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
