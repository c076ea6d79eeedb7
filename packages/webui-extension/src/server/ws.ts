/**
 * The websocket endpoint `/ws`. A client authenticates with `?token=` or a first message
 * `{type:"auth", token}` (within 5 s), from an allowed Origin (origin.ts). It then receives `job` messages
 * for every job state change and `library-changed` after hot-loads, and, per job it subscribes to with
 * `{type:"subscribe", jobId, since}`, every persisted event with seq > since followed by live ones, in seq
 * order without gaps or duplicates: the replay is read synchronously from SQLite in the same tick as the
 * subscription is recorded, so no live event can slip between the two.
 */
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import type { JobQueue } from "../jobs/queue.ts";
import type { JobEvent, JobRecord } from "../jobs/store.ts";
import type { OriginPolicy } from "./origin.ts";
import { tokenMatches } from "./token.ts";

const AUTH_TIMEOUT_MS = 5000;
const MAX_BUFFERED_BYTES = 16 << 20;

interface Client {
  ws: WebSocket;
  authed: boolean;
  /** jobId -> last seq sent */
  subs: Map<string, number>;
}

export class EventHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly clients = new Set<Client>();

  constructor(
    private readonly queue: JobQueue,
    private readonly token: string,
    private readonly origins: OriginPolicy,
  ) {
    queue.events.on("event", (ev: JobEvent) => this.onEvent(ev));
    queue.events.on("job", (job: JobRecord) => this.broadcast({ type: "job", job }));
  }

  attach(server: Server): void {
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname !== "/ws") return refuse(socket, 404, "Not Found");
      if (!this.origins.hostOk(req.headers)) return refuse(socket, 403, "Forbidden host");
      if (!this.origins.isAllowed(req.headers)) return refuse(socket, 403, "Forbidden origin");
      const queryToken = url.searchParams.get("token");
      if (queryToken !== null && !tokenMatches(this.token, queryToken))
        return refuse(socket, 401, "Unauthorized");
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, queryToken !== null));
    });
  }

  get clientCount(): number {
    return this.clients.size;
  }

  private accept(ws: WebSocket, authed: boolean): void {
    const client: Client = { ws, authed, subs: new Map() };
    this.clients.add(client);
    const timer = authed
      ? null
      : setTimeout(() => ws.close(4401, "no auth message within 5 s"), AUTH_TIMEOUT_MS).unref();
    ws.on("close", () => {
      if (timer) clearTimeout(timer);
      this.clients.delete(client);
    });
    ws.on("error", () => ws.terminate());
    ws.on("message", (raw) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(String(raw));
      } catch {
        this.send(client, { type: "error", message: "messages must be JSON" });
        return;
      }
      if (!client.authed) {
        if (msg.type === "auth" && tokenMatches(this.token, msg.token)) {
          client.authed = true;
          if (timer) clearTimeout(timer);
          this.hello(client);
        } else ws.close(4401, "wrong or missing token");
        return;
      }
      this.handle(client, msg);
    });
    if (authed) this.hello(client);
  }

  private hello(client: Client): void {
    this.send(client, { type: "hello", jobs: this.queue.store.list() });
  }

  private handle(client: Client, msg: Record<string, unknown>): void {
    if (msg.type === "subscribe" && typeof msg.jobId === "string") {
      const job = this.queue.store.get(msg.jobId);
      if (job === undefined) {
        this.send(client, { type: "error", message: `no job ${msg.jobId}` });
        return;
      }
      const since = typeof msg.since === "number" && msg.since >= 0 ? Math.floor(msg.since) : 0;
      let last = since;
      for (const ev of this.queue.store.eventsSince(job.id, since)) {
        this.send(client, { type: "event", event: ev });
        last = ev.seq;
      }
      client.subs.set(job.id, last);
      this.send(client, {
        type: "subscribed",
        jobId: job.id,
        lastSeq: last,
        job: this.queue.store.get(job.id),
      });
    } else if (msg.type === "unsubscribe" && typeof msg.jobId === "string") {
      client.subs.delete(msg.jobId);
    } else if (msg.type === "ping") {
      this.send(client, { type: "pong" });
    } else if (msg.type !== "auth") {
      this.send(client, { type: "error", message: `unknown message type ${String(msg.type)}` });
    }
  }

  private onEvent(ev: JobEvent): void {
    for (const c of this.clients) {
      const last = c.subs.get(ev.jobId);
      if (last === undefined || ev.seq <= last) continue;
      c.subs.set(ev.jobId, ev.seq);
      this.send(c, { type: "event", event: ev });
    }
  }

  broadcast(message: unknown): void {
    for (const c of this.clients) if (c.authed) this.send(c, message);
  }

  private send(c: Client, message: unknown): void {
    if (c.ws.readyState !== WebSocket.OPEN) return;
    // A client that stopped reading is dropped rather than letting its buffer grow without bound; it
    // reconnects with `since` and loses nothing.
    if (c.ws.bufferedAmount > MAX_BUFFERED_BYTES)
      return void c.ws.close(1013, "too slow; reconnect with since");
    c.ws.send(JSON.stringify(message));
  }

  close(): void {
    for (const c of this.clients) c.ws.terminate();
    this.wss.close();
  }
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
