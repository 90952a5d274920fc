import type { FastifyInstance, LogLevel } from 'fastify';

const ORDER = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/**
 * The `logLevel` route option for high-frequency routes (probes, scrapes): `warn`, unless the service is
 * configured quieter. A route's `logLevel` replaces the logger's level for that route, so a plain `'warn'`
 * would make these routes chattier than `--log_level=error` (or `silent`) asks for.
 */
export function quietLogLevel(app: FastifyInstance): LogLevel {
  const current = app.log.level;
  return ORDER.indexOf(current) > ORDER.indexOf('warn') ? (current as LogLevel) : 'warn';
}
