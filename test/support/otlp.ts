/**
 * An OTLP/HTTP trace receiver for tests: plain node:http on 127.0.0.1 at /v1/traces, as an OpenTelemetry
 * Collector listens, keeping every export it gets; and a reader that flattens the JSON exports into spans.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An OTLP/HTTP receiver: keeps every POST to /v1/traces (body text, headers). */
export interface Receiver {
  url: string;
  posts: { contentType: string | undefined; headers: IncomingHttpHeaders; body: string }[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const posts: Receiver['posts'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      posts.push({ contentType: req.headers['content-type'], headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, posts, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: OtlpValue }[];
  status?: { code?: number };
}
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean | undefined>;
  service: string | undefined;
  /** 2: error. */
  status: number | undefined;
}

export const SERVER = 2;
export const CLIENT = 3;

function value(v: OtlpValue): string | number | boolean | undefined {
  return v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.boolValue);
}

export function spansOf(receiver: Receiver): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const post of receiver.posts) {
    const body = JSON.parse(post.body) as {
      resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
    };
    for (const rs of body.resourceSpans) {
      const service = rs.resource.attributes.find((a) => a.key === 'service.name');
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          spans.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId || undefined,
            name: s.name,
            kind: s.kind,
            attributes: Object.fromEntries(s.attributes.map((a) => [a.key, value(a.value)])),
            service: service ? (value(service.value) as string) : undefined,
            status: s.status?.code,
          });
        }
      }
    }
  }
  return spans;
}

/**
 * Polls the receiver until `found` returns a value: spans are exported in batches on the exporter's schedule,
 * so a test waits for what it needs rather than for a fixed time.
 */
export async function waitForSpans<T>(receiver: Receiver, found: (spans: ReceivedSpan[]) => T | undefined, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = found(spansOf(receiver));
    if (result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`no ${what} reached the OTLP receiver in ${timeoutMs / 1000} s (${receiver.posts.length} exports)`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
