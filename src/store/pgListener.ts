/**
 * A dedicated PostgreSQL connection that LISTENs for invalidations. LISTEN is per session, so it cannot
 * live in the pool; when the connection drops it is re-established (with backoff) and re-LISTENs.
 * Notifications sent while it is down are lost: callers' caches must expire on their own as well.
 */
import pg from 'pg';

export interface PgListenerOptions {
  clientConfig: pg.ClientConfig;
  channel: string;
  onMessage: (payload: string) => void;
  onError: (err: unknown) => void;
  /** A `select 1` this often detects half-open connections that TCP would notice only after minutes. */
  heartbeatMs?: number;
}

export interface PgListener {
  close(): Promise<void>;
}

const MAX_BACKOFF_MS = 5000;

export function startPgListener(options: PgListenerOptions): PgListener {
  let closed = false;
  let current: pg.Client | undefined;
  let attempt = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;

  const drop = (client: pg.Client, err?: unknown) => {
    if (client !== current) return; // an older connection's late events
    current = undefined;
    if (err !== undefined) options.onError(err);
    client.end().catch(() => {});
    if (closed) return;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** attempt++);
    reconnectTimer = setTimeout(connect, delay);
    reconnectTimer.unref();
  };

  const connect = () => {
    if (closed) return;
    const client = new pg.Client(options.clientConfig);
    current = client;
    client.on('error', (err) => drop(client, err));
    client.on('end', () => drop(client));
    client.on('notification', (msg) => {
      if (msg.channel === options.channel && msg.payload !== undefined) options.onMessage(msg.payload);
    });
    client
      .connect()
      .then(() => client.query(`LISTEN ${client.escapeIdentifier(options.channel)}`))
      .then(() => {
        attempt = 0;
      })
      .catch((err: unknown) => drop(client, err));
  };

  const heartbeatMs = options.heartbeatMs ?? 30_000;
  heartbeatTimer = setInterval(() => {
    const client = current;
    client?.query('select 1').catch((err: unknown) => drop(client, err));
  }, heartbeatMs);
  heartbeatTimer.unref();

  connect();

  return {
    async close() {
      closed = true;
      clearTimeout(reconnectTimer);
      clearInterval(heartbeatTimer);
      heartbeatTimer = undefined;
      const client = current;
      current = undefined;
      await client?.end().catch(() => {});
    },
  };
}
