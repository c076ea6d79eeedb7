/**
 * The UI's link to the service: JSON over fetch (the token on every request that changes state) and one
 * websocket that authenticates with its first message, re-subscribes after a reconnect with the last seq
 * it saw per job (so a reload or a dropped connection never loses events), and re-dispatches messages as
 * DOM events: "job", "event", "hello", "library-changed", "status".
 */

export interface StudioConfig {
  /** Service base URL; "" = same origin (standalone page). */
  service: string;
  token: string | null;
  standalone: boolean;
  /** Set by the WebUI script when it could not start the service. */
  problem?: string;
}

export interface JobRecord {
  id: string;
  kind: string;
  state: string;
  params: unknown;
  result: unknown;
  error: string | null;
  createdAt: number;
  lastSeq: number;
}

export interface JobEvent {
  jobId: string;
  seq: number;
  time: number;
  type: string;
  data: Record<string, unknown> | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class StudioApi {
  constructor(public config: StudioConfig) {}

  url(path: string): string {
    return `${this.config.service}${path}`;
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = {};
    if (json) h["Content-Type"] = "application/json";
    if (this.config.token) h.Authorization = `Bearer ${this.config.token}`;
    return h;
  }

  private async answer<T>(res: Response): Promise<T> {
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    if (!res.ok) throw new ApiError(res.status, body.error ?? `HTTP ${res.status}`);
    return body as T;
  }

  async get<T>(path: string): Promise<T> {
    return this.answer<T>(await fetch(this.url(path)));
  }

  async send<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.url(path), {
      method,
      headers: this.headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return this.answer<T>(res);
  }

  async upload<T>(path: string, files: Iterable<File>): Promise<T> {
    const form = new FormData();
    for (const f of files) form.append("images", f, f.name);
    return this.answer<T>(
      await fetch(this.url(path), { method: "POST", headers: this.headers(false), body: form }),
    );
  }
}

export class EventSocket extends EventTarget {
  private ws: WebSocket | null = null;
  private readonly lastSeq = new Map<string, number>();
  private retry = 500;
  private stopped = false;
  status: "connecting" | "open" | "closed" | "unauthorized" = "connecting";

  constructor(private readonly api: StudioApi) {
    super();
  }

  connect(): void {
    const base = this.api.config.service || location.origin;
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/ws`);
    this.ws = ws;
    this.setStatus("connecting");
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token: this.api.config.token ?? "" }));
      for (const [jobId, since] of this.lastSeq) ws.send(JSON.stringify({ type: "subscribe", jobId, since }));
    };
    ws.onmessage = (m) => this.onMessage(JSON.parse(String(m.data)));
    ws.onclose = (e) => {
      if (e.code === 4401) return this.setStatus("unauthorized");
      this.setStatus("closed");
      if (!this.stopped) {
        setTimeout(() => this.connect(), this.retry);
        this.retry = Math.min(this.retry * 2, 8000);
      }
    };
  }

  private setStatus(s: EventSocket["status"]): void {
    this.status = s;
    this.dispatchEvent(new CustomEvent("status", { detail: s }));
  }

  private onMessage(msg: { type: string; [k: string]: unknown }): void {
    if (msg.type === "hello") {
      this.retry = 500;
      this.setStatus("open");
    }
    if (msg.type === "event") {
      const ev = msg.event as JobEvent;
      const last = this.lastSeq.get(ev.jobId);
      if (last !== undefined && ev.seq <= last) return;
      this.lastSeq.set(ev.jobId, ev.seq);
    }
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
  }

  /** Follows a job from `since` (0: its whole history, replayed again even if it was seen before). */
  subscribe(jobId: string, since = 0): void {
    this.lastSeq.set(jobId, since);
    if (this.ws?.readyState === WebSocket.OPEN && this.status === "open") {
      this.ws.send(JSON.stringify({ type: "subscribe", jobId, since: this.lastSeq.get(jobId) }));
    }
  }

  close(): void {
    this.stopped = true;
    this.ws?.close();
  }
}
