/**
 * A target's timeout on Node's own timers. It bounds every silence of an upstream exchange: from handing
 * the request to the pool (connecting counts) to the response headers, where request body data sent
 * counts as progress, and between response body chunks. (A large upload is not cut for taking long, only
 * for stalling; an SSE stream must send something more often than the timeout.)
 *
 * undici's headersTimeout/bodyTimeout run on its "fast timers": one 499 ms tick that counts ticks, not
 * time, and a timer's start is rounded back to the tick before. A 1.2 s timeout so fires anywhere from
 * about 1.0 s to 1.5 s on an idle machine, and later under load, where each late tick still counts as
 * 499 ms (seen: 2.2 s). undici 7 is kept on purpose (bench/RESULTS.md), so the precise timer is ours, in
 * an interceptor; undici's own timers stay as a backstop set a second later (src/proxy/http.ts).
 *
 * Node starts a timer from the event loop's clock, read when the current turn began: after a long turn
 * on a busy machine that is 100 ms and more behind, and the timer would fire that much early. So the
 * deadline keeps the real start (performance.now()) and a timer that fires early waits out the rest.
 *
 * The handler speaks undici's callback interface (onConnect, onHeaders, ...): the one that also reports
 * request body progress (onBodySent), which the controller interface does not.
 */
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { errors } from 'undici';

type Handler = Dispatcher.DispatchHandler;
type Abort = (err?: Error) => void;

/** The request's handler under a deadline (undici hands interceptors handlers with both interfaces). */
export function withDeadline(handler: Handler, timeoutMs: number): Handler {
  return typeof handler.onConnect === 'function' ? new Deadline(handler, timeoutMs) : handler;
}

class Deadline implements Handler {
  readonly #inner: Handler;
  readonly #timeoutMs: number;
  #timer: NodeJS.Timeout | undefined;
  /** When the current wait began, on the real clock. */
  #since = performance.now();
  #abort: Abort | undefined;
  /** The timeout that fired before undici started the request: the caller has had its answer. */
  #expired: Error | undefined;
  #headers = false;

  constructor(inner: Handler, timeoutMs: number) {
    this.#inner = inner;
    this.#timeoutMs = timeoutMs;
    this.#timer = setTimeout(this.#expire, timeoutMs);
  }

  readonly #expire = (): void => {
    const left = this.#timeoutMs - (performance.now() - this.#since);
    if (left >= 1) {
      this.#timer = setTimeout(this.#expire, left);
      return;
    }
    this.#timer = undefined;
    const err = this.#headers
      ? new errors.BodyTimeoutError(`no response data for ${this.#timeoutMs} ms`)
      : new errors.HeadersTimeoutError(`no response headers within ${this.#timeoutMs} ms`);
    // undici reports the abort through onError, which passes it on.
    if (this.#abort) return this.#abort(err);
    // Still queued or connecting: answer now; the request is aborted as soon as undici starts it.
    this.#expired = err;
    this.#inner.onError?.(err);
  };

  /**
   * A new wait begins (progress was made): the silence is counted from now. A running timer is left as it
   * is, not moved: when it fires, it finds the wait younger than the timeout and waits out the rest. Moving
   * a timer (refresh) on every header and body chunk cost more than that rare second timer.
   */
  #restart(): void {
    this.#since = performance.now();
    if (this.#timer === undefined) this.#timer = setTimeout(this.#expire, this.#timeoutMs);
  }

  #stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  onConnect(abort: Abort, context?: object): void {
    if (this.#expired) return abort(this.#expired);
    this.#abort = abort;
    // undici passes a context too (its types do not say so); the request handler keeps it.
    (this.#inner.onConnect as ((abort: Abort, context?: object) => void) | undefined)?.call(this.#inner, abort, context);
  }

  // Typed as undici's declarations have it; at run time undici passes the chunk, forwarded as it came.
  onBodySent(chunkSize: number, totalBytesSent: number): void {
    if (this.#timer !== undefined) this.#restart();
    this.#inner.onBodySent?.(chunkSize, totalBytesSent);
  }

  onResponseStarted(): void {
    this.#inner.onResponseStarted?.();
  }

  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#expired) return false;
    this.#headers = true;
    this.#restart();
    // A response the browser reads slowly is paused: that silence is ours, not the upstream's.
    const resumeCounting = () => {
      this.#restart();
      resume();
    };
    const flowing = this.#inner.onHeaders?.(statusCode, headers, resumeCounting, statusText) ?? true;
    if (!flowing) this.#stop();
    return flowing;
  }

  onData(chunk: Buffer): boolean {
    if (this.#expired) return false;
    this.#restart();
    const flowing = this.#inner.onData?.(chunk) ?? true;
    if (!flowing) this.#stop();
    return flowing;
  }

  onComplete(trailers: string[] | null): void {
    this.#stop();
    if (this.#expired) return;
    this.#inner.onComplete?.(trailers);
  }

  onError(err: Error): void {
    this.#stop();
    if (this.#expired) return;
    this.#inner.onError?.(err);
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.#stop();
    if (this.#expired) return;
    this.#inner.onUpgrade?.(statusCode, headers, socket);
  }
}
