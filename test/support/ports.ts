/**
 * Ports for servers that must know their port before they start (it is in a redirect URI registered at the
 * IdP, in public_url or an env file, or the server cannot listen on port 0, as nginx). A port found free is
 * released before the server binds it, and another process can take it meanwhile: start such servers through
 * `onFreePort`, which tries again on another port when that happened. A server that can listen on port 0 and
 * say where it listens should do that instead.
 */
import { createServer, type AddressInfo } from 'node:net';

/** How many ports `onFreePort` tries before it gives up. */
export const PORT_ATTEMPTS = 5;

/** A TCP port free right now on 127.0.0.1 (bound, then released: see `onFreePort`). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Whether an error says the address was in use: Node's EADDRINUSE, a child's output carried in the message
 * (token-handler's "listen EADDRINUSE", nginx's "Address already in use"), Vite's "Port N is already in use".
 */
export function isAddressInUse(err: unknown): boolean {
  if ((err as { code?: unknown } | null)?.code === 'EADDRINUSE') return true;
  const text = err instanceof Error ? err.message : String(err);
  return /EADDRINUSE|address already in use|port \d+ is already in use/i.test(text);
}

/**
 * Runs `start` with a port free right now; when the port was taken before `start` bound it (it throws an
 * error `isAddressInUse` recognises), runs it again with another port, `attempts` times in all. `start`
 * must stop whatever it started before it throws, and build everything that names the port (configuration,
 * IdP registrations) from the port it is given.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>, attempts = PORT_ATTEMPTS): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (attempt >= attempts || !isAddressInUse(err)) throw err;
    }
  }
}
