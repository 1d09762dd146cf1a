/*
 * A loopback HTTP proxy in front of a real server (the test RGW) that injects the faults
 * an object store shows under load: error answers (503 SlowDown) and answers that come
 * late. Requests pass through unchanged (the Host header too, so S3 signatures made for
 * the proxy's address still verify upstream); faults are queued and taken one per
 * request, so a test says exactly which requests fail.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';

/** What happens to one request. */
export type ProxyFault =
  | { readonly kind: 'status'; readonly status: number; readonly body?: string }
  | { readonly kind: 'delay'; readonly ms: number };

/** Which requests a fault applies to (default: any). */
export interface FaultMatch {
  readonly method?: string;
  /** A substring of the request path. */
  readonly pathIncludes?: string;
}

/** A forwarding proxy with a queue of faults. */
export class FaultProxy {
  readonly #faults: { fault: ProxyFault; match: FaultMatch }[] = [];
  /** Timers of requests held by a delay fault, cleared on close. */
  readonly #delays = new Set<NodeJS.Timeout>();
  /** Requests received, and those a fault changed. */
  readonly counts = { requests: 0, faulted: 0 };
  /** Every request received: method, path and Range header. */
  readonly log: { method: string; path: string; range: string | undefined }[] = [];

  private constructor(
    readonly server: Server,
    readonly upstream: URL,
  ) {}

  /** Starts a proxy on 127.0.0.1 (a free port) forwarding to `upstream` (`http://host:port`). */
  static async start(upstream: string): Promise<FaultProxy> {
    const server = createServer();
    const proxy = new FaultProxy(server, new URL(upstream));
    server.on('request', (req, res) => proxy.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  /** The next `count` matching requests get `fault`. */
  inject(fault: ProxyFault, count = 1, match: FaultMatch = {}): void {
    for (let i = 0; i < count; i++) this.#faults.push({ fault, match });
  }

  /** Faults still queued. */
  get pendingFaults(): number {
    return this.#faults.length;
  }

  /** Closes every connection and drops the delayed requests (their timers too). */
  async close(): Promise<void> {
    for (const timer of this.#delays) clearTimeout(timer);
    this.#delays.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  #take(req: IncomingMessage): ProxyFault | undefined {
    const at = this.#faults.findIndex(
      ({ match }) =>
        (match.method === undefined || match.method === req.method) &&
        (match.pathIncludes === undefined || (req.url ?? '').includes(match.pathIncludes)),
    );
    if (at < 0) return undefined;
    return this.#faults.splice(at, 1)[0]!.fault;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.counts.requests++;
    this.log.push({ method: req.method ?? '', path: req.url ?? '', range: req.headers.range });
    const fault = this.#take(req);
    if (fault !== undefined) this.counts.faulted++;
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/xml', connection: 'close' });
      res.end(fault.body ?? '');
      return;
    }
    const forward = (): void => {
      if (res.destroyed) return;
      const upstream = httpRequest(
        {
          host: this.upstream.hostname,
          port: this.upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer: IncomingMessage) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    };
    if (fault?.kind === 'delay') {
      req.pause();
      const timer = setTimeout(() => {
        this.#delays.delete(timer);
        forward();
      }, fault.ms);
      this.#delays.add(timer);
    } else forward();
  }
}
