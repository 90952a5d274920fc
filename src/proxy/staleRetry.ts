/**
 * One more try for a request the upstream's kept-alive connection lost before answering.
 *
 * An upstream closes a connection it has kept idle when its own idle timeout runs out (Node: 5 s, gunicorn:
 * 2 s), and often says nothing of it beforehand: no `Keep-Alive: timeout=` hint, so the pool cannot know.
 * A request written to that connection just as it closes gets no answer at all: the connection ends
 * (undici: "other side closed") or is reset (ECONNRESET, EPIPE) before a response header arrives. Without
 * a retry the browser would get a 502 from a healthy upstream, now and then, under any load.
 *
 * RFC 9112 §9.3.1 lets a proxy retry such a request when its method is idempotent, and not the retry
 * itself; Go's http.Transport (behind oauth2-proxy) and nginx (a cached upstream connection) do. Here:
 * - only GET, HEAD and OPTIONS (safe methods), and only without a streamed request body (reply-from passes
 *   a GET's empty body as a string), so nothing is lost by sending it twice;
 * - only when the connection closed or was reset before any response header of this request;
 * - only a connection that had carried a response: one that never did and closes or resets unanswered is the
 *   upstream refusing (or a failed connect), as Go's transport tells them apart (its `isReused`);
 * - once: the retry's own failure is the answer (a 502, as before), even if the retry met another stale
 *   connection of the pool.
 * The target's deadline (src/proxy/deadline.ts) wraps both tries with one abort: a retry never extends the
 * timeout, and a timeout between the tries (the retry waiting for a connection) answers at once.
 */
import type { Duplex } from 'node:stream';
import { buildConnector, errors, type Dispatcher } from 'undici';

type Handler = Dispatcher.DispatchHandler;
type Abort = (err?: Error) => void;
/** Told of each retry: the upstream origin and the failure that caused it. */
export type RetryListener = (origin: string, reason: string) => void;
type Retried = (reason: string) => void;

const RETRIED_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * The handler to dispatch with `dispatch` (the pool's): an eligible request's handler made to try once more,
 * any other returned as it is.
 */
export function withStaleRetry(dispatch: Dispatcher['dispatch'], options: Dispatcher.DispatchOptions, handler: Handler, onRetry?: Retried): Handler {
  if (!RETRIED_METHODS.has(options.method) || !replayable(options.body) || typeof handler.onConnect !== 'function') return handler;
  return new StaleRetry(dispatch, options, handler, onRetry);
}

/** A body that can be sent twice: none, or one held in memory (reply-from sends a GET's as `''`), never a stream. */
function replayable(body: Dispatcher.DispatchOptions['body']): boolean {
  return body == null || typeof body === 'string' || body instanceof Uint8Array;
}

/** A reset connection, as Node reports it on a read (ECONNRESET) or a write (EPIPE). */
function isReset(code: unknown): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE';
}

/** Resets (ECONNRESET, EPIPE) met on a connection that had read something before: see `markingResets`. */
const resetsAfterReading = new WeakSet<Error>();

/**
 * The pool's connector (undici's own, with its defaults), marking a reset of a connection that had read
 * something: a reset carries no record of the connection it ended, unlike undici's "other side closed".
 * The mark is made in the first 'error' listener, before undici's, on the same error object.
 */
export function markingResets(): buildConnector.connector {
  const connect = buildConnector({});
  return (options, callback) =>
    connect(options, (...args: buildConnector.Callback extends (...a: infer A) => void ? A : never) => {
      const socket = args[1];
      if (socket) {
        socket.on('error', (error: Error & { code?: unknown }) => {
          if (isReset(error.code) && socket.bytesRead > 0) resetsAfterReading.add(error);
        });
      }
      callback(...args);
    });
}

/**
 * Whether `err` is a kept-alive connection lost under a request that got no answer: closed or reset after
 * it had read something (a response before this request's). A connection that had read nothing never
 * carried a response: the upstream closed or reset it on purpose, or it failed to connect.
 */
function lostConnection(err: Error): boolean {
  const { code, socket } = err as Error & { code?: unknown; socket?: { bytesRead?: unknown } };
  if (isReset(code)) return resetsAfterReading.has(err);
  return code === 'UND_ERR_SOCKET' && typeof socket?.bytesRead === 'number' && socket.bytesRead > 0;
}

class StaleRetry implements Handler {
  readonly #dispatch: Dispatcher['dispatch'];
  readonly #options: Dispatcher.DispatchOptions;
  readonly #inner: Handler;
  readonly #onRetry: Retried | undefined;
  /** The abort of the try in progress; undefined before a try has started, and between the two. */
  #abortTry: Abort | undefined;
  #connected = false;
  #answered = false;
  #retried = false;
  /** Why the caller aborted while no try was in progress: it has had that as its answer. */
  #abandoned: Error | undefined;

  constructor(dispatch: Dispatcher['dispatch'], options: Dispatcher.DispatchOptions, inner: Handler, onRetry: Retried | undefined) {
    this.#dispatch = dispatch;
    this.#options = options;
    this.#inner = inner;
    this.#onRetry = onRetry;
  }

  /**
   * The one abort the caller (and the deadline) holds, whichever try is in progress. Between the tries, and
   * while the retry waits for a connection, it answers at once: the retry is aborted as it starts.
   */
  readonly #abort = (reason?: Error): void => {
    if (this.#abortTry) return this.#abortTry(reason);
    if (this.#abandoned) return;
    this.#abandoned = reason ?? new errors.RequestAbortedError();
    this.#inner.onError?.(this.#abandoned);
  };

  onConnect(abort: Abort, context?: object): void {
    if (this.#abandoned) return abort(this.#abandoned);
    this.#abortTry = abort;
    if (this.#connected) return;
    this.#connected = true;
    (this.#inner.onConnect as ((abort: Abort, context?: object) => void) | undefined)?.call(this.#inner, this.#abort, context);
  }

  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.#inner.onBodySent?.(chunkSize, totalBytesSent);
  }

  onResponseStarted(): void {
    this.#inner.onResponseStarted?.();
  }

  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    this.#answered = true;
    return this.#inner.onHeaders?.(statusCode, headers, resume, statusText) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.#inner.onData?.(chunk) ?? true;
  }

  onComplete(trailers: string[] | null): void {
    this.#inner.onComplete?.(trailers);
  }

  onError(err: Error): void {
    // The abandoned retry's own abort: the caller has had its answer.
    if (this.#abandoned) return;
    if (this.#answered || this.#retried || !lostConnection(err)) return this.#inner.onError?.(err);
    this.#retried = true;
    this.#abortTry = undefined;
    this.#onRetry?.(err.message);
    // After undici has finished with the lost connection (it is still closing it now).
    process.nextTick(() => {
      if (this.#abandoned) return;
      try {
        this.#dispatch(this.#options, this);
      } catch (retryErr) {
        this.#inner.onError?.(retryErr as Error);
      }
    });
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.#inner.onUpgrade?.(statusCode, headers, socket);
  }
}
