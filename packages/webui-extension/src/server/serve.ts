/**
 * serve(): the lora-studio service. express for the HTTP API and the standalone page, ws for live events,
 * SQLite for jobs. Binds 127.0.0.1 unless `listen` is set; the token (token.ts) is required for every
 * request that changes state and for every websocket, on any bind.
 */

import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import express, { type NextFunction, type Request, type Response } from "express";
import { refreshLoras } from "../bridge/webui.ts";
import { bundleUi } from "../build-extension.ts";
import { Datasets, DEFAULT_UPLOAD_LIMITS, type UploadLimits } from "../datasets/datasets.ts";
import { JobQueue } from "../jobs/queue.ts";
import { JobStore } from "../jobs/store.ts";
import { LoraLibrary } from "../library/library.ts";
import { checkRelativeText, toRelative } from "../library/safe-path.ts";
import { DEFAULT_LORA_SUBFOLDER } from "../training/hot-load.ts";
import { isLoopbackHost, OriginPolicy } from "./origin.ts";
import { pageHtml } from "./page.ts";
import { datasetRoutes } from "./routes-datasets.ts";
import { generateRoutes } from "./routes-generate.ts";
import { jobRoutes, trainingEngineAvailable, trainRoutes } from "./routes-jobs.ts";
import { libraryRoutes } from "./routes-library.ts";
import { Thumbnails } from "./thumbnails.ts";
import { loadOrCreateToken, tokenFromHeaders, tokenMatches } from "./token.ts";
import { EventHub } from "./ws.ts";

export interface ServeOptions {
  port?: number;
  host?: string;
  /** Token, jobs database, trash, caches, datasets (default `<dataDir>/datasets`). */
  dataDir: string;
  /** The Lora folder managed and written to (the WebUI's models/Lora, or the service's own). */
  loraDir: string;
  datasetsDir?: string;
  /** The WebUI's URL: its origin may use the API (CORS, websocket) and it is told to refresh its LoRAs. */
  webuiUrl?: string;
  /** More browser origins allowed to call the service. */
  allowedOrigins?: string[];
  /** Required to bind anything but loopback. */
  listen?: boolean;
  /** Model jobs (training, txt2img, auto-label) at once; file jobs (merge, check, index) run beside them. */
  concurrency?: number;
  uploadLimits?: UploadLimits;
  /** Subfolder of the Lora folder that training jobs write their LoRAs into (default "lora-studio"). */
  loraSubfolder?: string;
  /** CLIP tokenizer folder for single-file base models (default: $LORA_STUDIO_CLIP_TOKENIZER, next to the model). */
  clipTokenizerDir?: string;
  /** Tagger folders (model.onnx + selected_tags.csv) auto-label jobs may use; the first is the default. */
  taggerDirs?: string[];
  /** txt2img's base model when a request names none (default: $LORA_STUDIO_BASE_MODEL, else the demo base). */
  baseModel?: string;
}

export interface Service {
  url: string;
  port: number;
  host: string;
  token: string;
  queue: JobQueue;
  hub: EventHub;
  library: LoraLibrary;
  close(): Promise<void>;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const STYLE_CSS = fileURLToPath(new URL("../../extension/style.css", import.meta.url));

function isLoopbackBind(host: string): boolean {
  return host === "127.0.0.1" || host === "::1" || host === "localhost";
}

export async function serve(options: ServeOptions): Promise<Service> {
  const host = options.host ?? "127.0.0.1";
  if (!isLoopbackBind(host) && options.listen !== true) {
    throw new Error(
      `binding to ${host} exposes the service beyond this machine: pass listen (--listen) to confirm`,
    );
  }
  const token = await loadOrCreateToken(options.dataDir);
  const env = {
    dataDir: options.dataDir,
    loraDir: options.loraDir,
    datasetsDir: options.datasetsDir ?? join(options.dataDir, "datasets"),
    loraSubfolder: checkRelativeText(options.loraSubfolder ?? DEFAULT_LORA_SUBFOLDER, "loraSubfolder").join(
      "/",
    ),
    clipTokenizerDir: options.clipTokenizerDir,
    taggerDirs: options.taggerDirs ?? [],
  };
  const library = new LoraLibrary(env.loraDir, env.dataDir);
  const thumbnails = new Thumbnails(join(env.dataDir, "thumbs"));
  const datasets = new Datasets(env.datasetsDir);
  const origins = new OriginPolicy(
    [...(options.webuiUrl ? [options.webuiUrl] : []), ...(options.allowedOrigins ?? [])],
    isLoopbackBind(host),
  );
  let hub: EventHub | undefined;
  const announceLibrary = (why: string, files: string[] = []) =>
    hub?.broadcast({ type: "library-changed", why, files });
  const store = new JobStore(options.dataDir);
  const queue = new JobQueue(store, env, {
    concurrency: options.concurrency,
    onLoraFiles: async (job, files) => {
      const rel = files.map((f) => toRelative(env.loraDir, f));
      let refreshed = false;
      try {
        if (options.webuiUrl) {
          await refreshLoras(options.webuiUrl);
          refreshed = true;
          queue.note(job.id, "log", {
            level: "info",
            message: `WebUI refreshed its LoRAs: ${rel.join(", ")}`,
          });
        }
      } finally {
        // The files are in the folder either way: the page (Library, Runs) is told even if the WebUI is not.
        queue.note(job.id, "hot-loaded", { files: rel, refreshed });
        announceLibrary("job", rel);
      }
    },
  });

  const app = express();
  app.disable("x-powered-by");
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (!origins.hostOk(req.headers))
      return void res.status(403).json({ error: "forbidden Host header (DNS rebinding guard)" });
    const origin = req.headers.origin;
    if (origins.isAllowedCrossOrigin(origin)) {
      res.set("Access-Control-Allow-Origin", origin);
      res.set("Vary", "Origin");
      res.set("Access-Control-Allow-Headers", "Authorization, X-LoRA-Studio-Token, Content-Type");
      res.set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
      if (req.method === "OPTIONS") return void res.status(204).end();
    }
    if (!SAFE_METHODS.has(req.method)) {
      if (!tokenMatches(token, tokenFromHeaders(req.headers))) {
        return void res.status(401).json({ error: "missing or wrong token (Authorization: Bearer <token>)" });
      }
      if (!origins.isAllowed(req.headers))
        return void res.status(403).json({ error: `origin ${origin} not allowed` });
    }
    next();
  });
  app.use(express.json({ limit: "1mb" }));
  app.get("/", (req, res) => {
    res.type("html").set("Cache-Control", "no-store").send(pageHtml(req, token));
  });
  let bundle: Promise<string> | undefined;
  app.get("/ui/lora-studio.js", async (_req, res) => {
    bundle ??= bundleUi();
    res.type("js").send(await bundle);
  });
  app.get("/ui/style.css", async (_req, res) => {
    res.type("css").send(await readFile(STYLE_CSS, "utf8"));
  });
  app.get("/api/health", (_req, res) => {
    res.json({
      ok: true,
      jobKinds: JobQueue.kinds(),
      trainingEngine: trainingEngineAvailable(),
      webuiUrl: options.webuiUrl ?? null,
    });
  });
  app.use(
    "/api/lora",
    libraryRoutes(library, queue, thumbnails, (why) => announceLibrary(why)),
  );
  app.use(
    "/api/datasets",
    datasetRoutes(datasets, queue, thumbnails, options.uploadLimits ?? DEFAULT_UPLOAD_LIMITS),
  );
  app.use("/api/jobs", jobRoutes(queue));
  app.use("/api/train", trainRoutes(env, store));
  const txt2img = generateRoutes(queue, env, { baseModel: options.baseModel });
  app.use("/api/generate", txt2img.generate);
  app.use("/api/outputs", txt2img.outputs);
  app.use(
    (err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
      const status =
        typeof err.status === "number" && err.status >= 400 && err.status < 600 ? err.status : 500;
      res.status(status).json({ error: err.message, kind: err.name });
    },
  );

  const server: Server = createServer(app);
  hub = new EventHub(queue, token, origins);
  hub.attach(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 7870, host, () => resolve());
  });
  queue.start();
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    host,
    token,
    queue,
    hub,
    library,
    close: async () => {
      await queue.close();
      await txt2img.close();
      hub?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      store.close();
    },
  };
}

export { isLoopbackHost };
