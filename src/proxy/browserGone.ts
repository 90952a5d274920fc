/**
 * A browser that leaves before the upstream has answered cancels the upstream request, as Go's
 * httputil.ReverseProxy (behind oauth2-proxy) cancels its request's context and nginx closes the upstream
 * connection (`proxy_ignore_client_abort off`, its default). Without it the upstream request ran on,
 * holding one of the target's pooled connections, until the upstream answered (a long poll: up to the
 * target's timeout) and the answer was thrown away.
 *
 * Only before the response headers: once the response has begun it goes to the browser as before (a
 * streamed body ends with the browser's connection: Fastify destroys the stream it was piping, and undici
 * aborts the request with it; a small body, read whole before it is sent, is read to its end).
 *
 * A request already written to the upstream is aborted, which closes its connection: that is how the
 * upstream learns of it. One still waiting for a connection is failed as undici is about to write it,
 * by throwing from onConnect: undici then drops it and keeps the connection for the next request
 * (client-h1.js writeH1), where an abort would destroy that warm connection.
 *
 * The link rides on the request's header object under a symbol (copied with the headers, never sent), as
 * the routing dispatcher's choice of pool does (src/proxy/table.ts); the dispatcher puts it outside the
 * target's deadline and stale-connection retry, so its abort is theirs: one abort for both tries.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';

type Handler = Dispatcher.DispatchHandler;
type Abort = (err?: Error) => void;

/** Where the request's link to its browser rides on the upstream request's headers. */
export const kBrowser = Symbol('token-handler.browser');

/** Why the upstream request was aborted: its browser closed the connection before the upstream answered. */
export class BrowserGoneError extends Error {
  readonly code = 'TH_BROWSER_GONE';

  constructor() {
    super('the browser closed its connection before the upstream answered');
  }
}

/**
 * One proxied request's upstream exchange, tied to its browser's connection: the handler undici is given
 * (`attach`), which aborts the exchange when the browser leaves before the response headers, and keeps
 * that abort's own error from the caller, which `onGone` has already told.
 */
export class BrowserLink implements Handler {
  readonly #onGone: () => void;
  #inner: Handler | undefined;
  #abort: Abort | undefined;
  #gone: BrowserGoneError | undefined;
  /** The response (its final, non-1xx headers) began, or the exchange ended: the browser's leaving is no longer ours. */
  #settled = false;

  /** `onGone` runs once, when the browser leaves before the upstream's answer (the exchange is then aborted). */
  constructor(response: ServerResponse, onGone: () => void) {
    this.#onGone = onGone;
    // Gone already (while the session was looked up, say): the exchange is aborted as soon as it starts. The
    // request's socket, not the response's: a pipelined request's response has none until those before it
    // are answered (and still has its 'close' when the browser leaves meanwhile).
    if (response.req.socket.destroyed) this.#leave();
    else response.once('close', () => (response.writableFinished ? undefined : this.#leave()));
  }

  /** Whether the browser left before the upstream answered (then nothing more is to be sent for it). */
  get gone(): boolean {
    return this.#gone !== undefined;
  }

  /** The handler to dispatch the exchange with (once). */
  attach(inner: Handler): Handler {
    this.#inner = inner;
    return this;
  }

  #leave(): void {
    if (this.#settled || this.#gone) return;
    this.#gone = new BrowserGoneError();
    // Not yet started (queued for a connection): failed in onConnect.
    this.#abort?.(this.#gone);
    this.#onGone();
  }

  onConnect(abort: Abort, context?: object): void {
    // Thrown, not aborted: undici fails the request unwritten and keeps the connection (see above).
    if (this.#gone) throw this.#gone;
    this.#abort = abort;
    // undici passes a context too (its types do not say so); the request handler keeps it.
    (this.#inner?.onConnect as ((abort: Abort, context?: object) => void) | undefined)?.call(this.#inner, abort, context);
  }

  // Typed as undici's declarations have it; at run time undici passes the chunk, forwarded as it came.
  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.#inner?.onBodySent?.(chunkSize, totalBytesSent);
  }

  onResponseStarted(): void {
    this.#inner?.onResponseStarted?.();
  }

  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    // A 1xx (103 Early Hints) is not the answer: the browser may still leave before it.
    if (statusCode >= 200) this.#settled = true;
    return this.#inner?.onHeaders?.(statusCode, headers, resume, statusText) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.#inner?.onData?.(chunk) ?? true;
  }

  onComplete(trailers: string[] | null): void {
    this.#settled = true;
    this.#inner?.onComplete?.(trailers);
  }

  onError(err: Error): void {
    this.#settled = true;
    // Our own abort, or whatever else ended the exchange after the browser left (the deadline, while it
    // waited for a connection): `onGone` has answered for it, and there is nobody left to answer.
    if (this.#gone !== undefined) return;
    this.#inner?.onError?.(err);
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.#settled = true;
    this.#inner?.onUpgrade?.(statusCode, headers, socket);
  }
}
