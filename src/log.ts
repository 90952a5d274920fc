import type { FastifyRequest } from 'fastify';
import type { LoggerOptions } from 'pino';
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
  'password',
  'registrationToken',
  'registration_access_token',
  'tokens',
  'cookie',
  'authorization',
];

/** Header and field paths pino replaces with [REDACTED] wherever they appear in a log line. */
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
  ...SECRET_FIELDS.map((field) => `*.${field}`),
];

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
  if (arg === null || typeof arg !== 'object' || Object.getPrototypeOf(arg) !== Object.prototype) return arg;
  let copy: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(arg)) {
    if (typeof value !== 'string') continue;
    const scrubbed = scrubCredentials(value);
    if (scrubbed !== value) (copy ??= { ...(arg as Record<string, unknown>) })[key] = scrubbed;
  }
  return copy ?? arg;
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
        // Defensive: a serializer that throws would lose the whole line (and the caller's log call).
        return {
          method: req.method,
          url: typeof req.url === 'string' ? redactUrl(req.url) : undefined,
          host: req.host,
          remoteAddress: req.ip,
        };
      },
    },
  };
  if (pretty && !config.isProduction) {
    options.transport = { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } };
  }
  return options;
}
