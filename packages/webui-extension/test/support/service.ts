/** Test helpers: temp folders with a fixture LoRA, a service on a free loopback port, a websocket client. */
import { rmSync } from "node:fs";
import { copyFile, mkdir, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { type ServeOptions, type Service, serve } from "../../src/server/serve.ts";
import { type A1111Host, startA1111Host } from "./a1111-host.ts";

export const FIXTURES = fileURLToPath(new URL("../../../../../shared/fixtures/", import.meta.url));
export const FIXTURE_LORA = join(FIXTURES, "tiny-sd1", "lora", "tiny-sd1-lora-kohya.safetensors");

export interface Dirs {
  root: string;
  dataDir: string;
  loraDir: string;
}

const made: string[] = [];
/** Temp folders of this test process, removed when it exits. */
function track(dir: string): string {
  if (made.length === 0) {
    process.once("exit", () => {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    });
  }
  made.push(dir);
  return dir;
}

/** A data folder and a Lora folder holding one fixture LoRA as `style/tiny.safetensors` and `tiny-b.safetensors`. */
export async function makeDirs(prefix = "ls-webui-"): Promise<Dirs> {
  const root = track(await mkdtemp(join(tmpdir(), prefix)));
  const dataDir = join(root, "data");
  const loraDir = join(root, "webui", "models", "Lora");
  await mkdir(join(loraDir, "style"), { recursive: true });
  await copyFile(FIXTURE_LORA, join(loraDir, "style", "tiny.safetensors"));
  await copyFile(FIXTURE_LORA, join(loraDir, "tiny-b.safetensors"));
  return { root, dataDir, loraDir };
}

export function start(dirs: Dirs, extra: Partial<ServeOptions> = {}): Promise<Service> {
  return serve({ port: 0, dataDir: dirs.dataDir, loraDir: dirs.loraDir, ...extra });
}

export async function call(
  svc: { url: string; token?: string },
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> & { error?: string } }> {
  const h: Record<string, string> = { ...headers };
  if (body !== undefined) h["content-type"] = "application/json";
  if (svc.token !== undefined) h.authorization = `Bearer ${svc.token}`;
  const res = await fetch(svc.url + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
}

export interface WsClient {
  ws: WebSocket;
  messages: Array<Record<string, unknown>>;
  /** Resolves with the first message (already received or future) matching `pred`. */
  waitFor(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  send(m: unknown): void;
  closed: Promise<{ code: number; reason: string }>;
}

export function connectWs(
  url: string,
  opts: { token?: string; queryToken?: string; origin?: string } = {},
): Promise<WsClient> {
  const wsUrl = `${url.replace(/^http/, "ws")}/ws${opts.queryToken !== undefined ? `?token=${opts.queryToken}` : ""}`;
  const ws = new WebSocket(wsUrl, opts.origin ? { origin: opts.origin } : {});
  const messages: Array<Record<string, unknown>> = [];
  const waiters: Array<{
    pred: (m: Record<string, unknown>) => boolean;
    resolve: (m: Record<string, unknown>) => void;
  }> = [];
  ws.on("message", (raw) => {
    const m = JSON.parse(String(raw));
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((r) =>
    ws.on("close", (code, reason) => r({ code, reason: String(reason) })),
  );
  const client: WsClient = {
    ws,
    messages,
    closed,
    send: (m) => ws.send(JSON.stringify(m)),
    waitFor: (pred, timeoutMs = 20000) => {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`timed out waiting; got ${JSON.stringify(messages.slice(-5))}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
        });
      });
    },
  };
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      if (opts.token !== undefined) client.send({ type: "auth", token: opts.token });
      resolve(client);
    });
    ws.once("unexpected-response", (_req, res) =>
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })),
    );
    ws.once("error", reject);
  });
}

/** Resolves when the job reaches one of `states` (polling the API). */
export async function waitForJob(
  svc: Service,
  id: string,
  states: string[],
  timeoutMs = 30000,
): Promise<Record<string, unknown>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const job = svc.queue.store.get(id);
    if (job && states.includes(job.state)) return job as unknown as Record<string, unknown>;
    if (Date.now() > end)
      throw new Error(`job ${id} is ${job?.state}, waited for ${states.join("/")}: ${job?.error}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let built: Promise<string> | undefined;
/** The extension folder built by build-extension.ts into a temp folder (once per test process). */
export function builtExtension(): Promise<string> {
  built ??= (async () => {
    const { buildExtension } = await import("../../src/build-extension.ts");
    const dir = track(await mkdtemp(join(tmpdir(), "ls-ext-")));
    return buildExtension(join(dir, "lora-studio"));
  })();
  return built;
}

/**
 * The service behind an A1111-shaped host page (support/a1111-host.ts) with the built extension installed; the
 * mount point carries the service's URL and token, as the extension's scripts/lora_studio.py renders them.
 */
export async function startWithHost(
  dirs: Dirs,
  extra: Partial<ServeOptions> = {},
  extensionDir?: string,
): Promise<{ host: A1111Host; svc: Service }> {
  const mountAttrs: Record<string, string> = {};
  const host = await startA1111Host({
    webuiDir: join(dirs.root, "webui"),
    extensionDir: extensionDir ?? (await builtExtension()),
    mountAttrs,
  });
  const svc = await start(dirs, { webuiUrl: host.url, ...extra });
  mountAttrs.service = svc.url;
  mountAttrs.token = svc.token;
  return { host, svc };
}
