/**
 * A Unix domain socket for an internal listener (`--forward_auth_listen_addr unix:/path`): a file that a
 * process killed without closing its server (SIGKILL, a crash, a power cut) leaves behind, and that the next
 * start must remove before it can listen, but only when nothing listens on it any more: removing a live
 * socket would take it from a running instance.
 */
import { lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';

/** How long a connection attempt to an existing socket may take before the socket counts as live. */
const PROBE_TIMEOUT_MS = 1_000;

/** Whether something accepts connections on the socket at `path`. */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const done = (live: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(live);
    };
    // A listener with a full backlog does not answer at once, but it is there.
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS);
    socket.once('connect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'));
  });
}

/**
 * Makes `path` free for a new listener: nothing there, or a socket nobody listens on (removed). Throws a
 * readable error for a live socket (another instance) and for anything that is not a socket (never deleted).
 */
export async function clearStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a Unix socket; not removing it`);
  if (await accepts(path)) throw new Error(`${path} is in use: another process listens on it`);
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Whether a socket mode lets every local user connect (write permission for others). */
export function worldConnectable(mode: number): boolean {
  return (mode & 0o002) !== 0;
}
