/**
 * A browser that leaves before the upstream has answered cancels the upstream request, as Go's
 * httputil.ReverseProxy (behind oauth2-proxy) cancels its request's context and nginx closes the upstream
 * connection (`proxy_ignore_client_abort off`, its default). Without it the upstream request ran on,
 * holding one of the target's pooled connections, until the upstream answered (a long poll: up to the
 * target's timeout) and the answer was thrown away.
 *
 * Only before the response headers: once the response has begun it streams to the browser, and a browser
 * that leaves then already ends the upstream request (Fastify destroys the body stream it was piping, and
 * undici aborts the request with it).
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
  /** The response headers arrived, or the exchange ended: the browser's leaving is no longer ours. */
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

  /** The handler to dispatch the exchange with (once). */
  attach(inner: Handler): Handler {
    this.#inner = inner;
    return this;
  }

  #leave(): void {
    if (this.#settled || this.#gone) return;
    this.#gone = new BrowserGoneError();
    this.#onGone();
    // Not yet started (queued for a connection): aborted in onConnect.
    this.#abort?.(this.#gone);
  }

  onConnect(abort: Abort, context?: object): void {
    if (this.#gone) return abort(this.#gone);
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
    this.#settled = true;
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
