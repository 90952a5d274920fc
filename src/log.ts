import type { FastifyReply, FastifyRequest } from 'fastify';
import { createRequire } from 'node:module';
import { pino, stdSerializers, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { clientAddress } from './ops/clientAddress.ts';
import { TurnBatchedStdout } from './ops/logDestination.ts';
import type { Config } from './config/types.ts';

/** Query parameters whose values are credentials or one-time secrets: never logged. */
const SECRET_PARAMS = /^(code|state|session_state|id_token_hint|token|access_token|refresh_token|id_token|logout_token|sid|client_secret|password|registrationToken)$/i;

/** Field names whose values are credentials, redacted at the top level of a log object and one level down. */
const SECRET_FIELDS = [
  'accessToken',
  'refreshToken',
  'idToken',
  'access_token',
  'refresh_token',
  'id_token',
  'id_token_hint',
  'logout_token',
  'logoutToken',
  'code_verifier',
  'codeVerifier',
  'client_secret',
  'clientSecret',
  'clientKey',
  'pkcs8',
  'client_assertion',
  'password',
  'registrationToken',
  'registration_access_token',
  'tokens',
  'cookie',
  'authorization',
];

const SECRET_FIELD_SET: ReadonlySet<string> = new Set(SECRET_FIELDS);
const CENSOR = '[REDACTED]';

/**
 * Header and field paths pino replaces with [REDACTED] wherever they appear in a log line. The secret
 * fields one level down (`*.<field>`) are censored by `censorNestedSecrets` instead: pino's redaction
 * parses and walks every path on every line for every key (one `*.` path applies to all keys), which made
 * the per-request line cost ~50 µs instead of ~8 µs.
 */
export const REDACT_PATHS = [
  ...['req', 'res', 'request', 'response', 'upstream'].flatMap((at) => [
    `${at}.headers.authorization`,
    `${at}.headers.cookie`,
    `${at}.headers["set-cookie"]`,
    `${at}.headers["x-xsrf-token"]`,
    `${at}.headers["proxy-authorization"]`,
  ]),
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  'headers["x-xsrf-token"]',
  'headers["proxy-authorization"]',
  ...SECRET_FIELDS,
];

/** Keys whose values pino serializes (our serializers below censor their output instead of their input). */
const SERIALIZED_KEYS: ReadonlySet<string> = new Set(['req', 'res', 'err']);

/** `value` with its own secret fields censored (a shallow copy when there are any), else `value` itself. */
function censorFields<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(value)) {
    if (SECRET_FIELD_SET.has(key)) (copy ??= { ...(value as Record<string, unknown>) })[key] = CENSOR;
  }
  return (copy ?? value) as T;
}

/**
 * What pino's `*.<secret field>` paths did, in one pass: every object one level below the log object loses
 * its secret fields (the top-level ones are pino's `redact` paths). Values of serialized keys are left to
 * their serializers, which censor their output. Returns the object itself when nothing is secret.
 */
function censorNestedSecrets(obj: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    if (value === null || typeof value !== 'object' || SERIALIZED_KEYS.has(key)) continue;
    const censored = censorFields(value);
    if (censored !== value) (copy ??= { ...obj })[key] = censored;
  }
  return copy ?? obj;
}

/** Credentials recognisable by their shape, scrubbed from messages and top-level string fields. */
const JWT = /\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/g;
// `Basic` is left to the header redaction: as a word it is too common in ordinary messages.
const BEARER = /\b(Bearer|DPoP)\s+[A-Za-z0-9._~+/=-]{8,}/gi;

/** A string with JWTs and bearer credentials replaced, for log lines. */
export function scrubCredentials(text: string): string {
  if (!text.includes('eyJ') && !/bearer|dpop/i.test(text)) return text;
  return text.replace(JWT, '[REDACTED_JWT]').replace(BEARER, '$1 [REDACTED]');
}

function scrubArgument(arg: unknown): unknown {
  if (typeof arg === 'string') return scrubCredentials(arg);
  // An Error as the log object is serialized (and censored) as `err`.
  if (arg === null || typeof arg !== 'object' || arg instanceof Error) return arg;
  const plain = Object.getPrototypeOf(arg) === Object.prototype;
  let copy: Record<string, unknown> | undefined;
  if (plain) {
    for (const key of Object.keys(arg)) {
      const value = (arg as Record<string, unknown>)[key];
      if (typeof value !== 'string') continue;
      const scrubbed = scrubCredentials(value);
      if (scrubbed !== value) (copy ??= { ...(arg as Record<string, unknown>) })[key] = scrubbed;
    }
  }
  const censored = censorNestedSecrets(copy ?? (arg as Record<string, unknown>));
  return censored === arg && !copy ? arg : censored;
}

/** A URL with the values of secret query parameters replaced, for logs. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  let changed = false;
  for (const key of [...params.keys()]) {
    if (SECRET_PARAMS.test(key)) {
      params.set(key, '[REDACTED]');
      changed = true;
    }
  }
  return changed ? `${url.slice(0, q)}?${params.toString()}` : url;
}

/**
 * A request URL as it may appear in a log line: secret query values redacted, JWT- and bearer-shaped
 * credentials anywhere in it scrubbed; undefined for anything but a string. The `req` serializer below
 * and the directly written request line (src/ops/requestLog.ts) both use it, so the two stay equal.
 */
export function logSafeUrl(url: unknown): string | undefined {
  return typeof url === 'string' ? scrubCredentials(redactUrl(url)) : undefined;
}

export function loggerOptions(config: Pick<Config, 'logLevel' | 'isProduction'>, pretty: boolean): LoggerOptions {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    hooks: {
      // Defence in depth behind the path-based redaction: an error message or a warning that quotes a
      // token (an IdP's error_description, a misconfigured URL) is caught by the token's shape.
      logMethod(args, method) {
        return method.apply(this, args.map(scrubArgument) as Parameters<typeof method>);
      },
    },
    serializers: {
      req(req: FastifyRequest) {
        // A serializer must not throw: it would lose the line and throw out of the caller's log call, which
        // may run after the response, where nothing catches it (issue #17). clientAddress never throws.
        return {
          method: req.method,
          url: logSafeUrl(req.url),
          host: req.host,
          remoteAddress: clientAddress(req),
        };
      },
      // As Fastify's own, stated here so every serialized key is one we know is free of secrets.
      res(reply: FastifyReply) {
        return { statusCode: reply.statusCode };
      },
      // pino's, with an error's own secret-named properties censored (censorNestedSecrets skips `err`).
      err(err: Error) {
        return censorFields(stdSerializers.err(err));
      },
    },
  };
  if (pretty && !config.isProduction && prettyPrinterInstalled()) {
    options.transport = { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } };
  }
  return options;
}

/**
 * pino-pretty is a development dependency: an install without them (`npm ci --omit=dev`) logs JSON lines
 * on a terminal too, instead of failing to start the transport.
 */
function prettyPrinterInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/**
 * Marks a logger whose line format is exactly `loggerOptions`' (pino's default level numbers, `time` and
 * `msg` keys, no log formatter): src/ops/requestLog.ts writes its per-request line for such loggers
 * itself. Children inherit the mark (pino children are prototype copies of their parent).
 */
export const kAccessLineFormat = Symbol.for('token-handler.accessLineFormat');

/**
 * The service's logger: `loggerOptions`, written to `stream` when given, else to stdout (one write per
 * turn of the event loop, src/ops/logDestination.ts), pretty on a terminal outside production.
 */
export function createLogger(config: Pick<Config, 'logLevel' | 'isProduction'>, pretty: boolean, stream?: DestinationStream): Logger {
  const options = loggerOptions(config, pretty);
  const logger = stream ? pino(options, stream) : options.transport ? pino(options) : pino(options, new TurnBatchedStdout());
  Object.defineProperty(logger, kAccessLineFormat, { value: true });
  return logger;
}
