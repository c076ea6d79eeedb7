/**
 * WorkerSession: a Session living in a worker_thread, so `run` does not block the main event loop (ORT's run is
 * synchronous inside its promise: a 1.6 s step froze a 5 ms timer for 1.6 s). Same API as Session.
 *
 * Tensors cross the thread boundary by transferring their ArrayBuffers (no copy): feeds listed in `transfer`
 * become detached in the caller, and outputs arrive as the worker's arrays. TrainStepRunner uses this to move the
 * training state back and forth without copying it.
 *
 * Loading a .ts worker: see startWorker (tested in runtime-worker.test.ts); a compiled .js build would use the
 * .js entry as is.
 */
import { Worker } from "node:worker_threads";
import type { Graph } from "../graph/ir.ts";
import { consoleSink } from "./messages.ts";
import { createWithProviders, prepareModelFile, type SessionOptions } from "./session.ts";
import type { HostTensor } from "./tensor.ts";
import { type CreateResult, type Request, type Response, transferables } from "./worker-protocol.ts";

/**
 * Starts the worker. Under Node 20, a worker pointed at a .ts file fails with "Unknown file extension" even
 * when the parent runs under tsx (`tsx x.ts` or `node --import tsx`) and even with `execArgv: ["--import",
 * "tsx"]`: the loader hooks are not applied to the worker's entry. What works (tested both ways) is a tiny eval'd
 * bootstrap that registers tsx's ESM hooks inside the worker, then imports the .ts entry.
 */
function startWorker(entry: URL): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry);
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${api}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(code, { eval: true, execArgv: [] });
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export interface RunOptions {
  /** Feed names whose buffers move to the worker (detached here afterwards); "all" for every feed. Default none. */
  transfer?: readonly string[] | "all";
}

export class WorkerSession {
  readonly provider: string;
  readonly fallback: string | undefined;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly worker: Worker;
  private readonly pending: Map<number, Pending>;
  private nextId: number;

  private constructor(worker: Worker, pending: Map<number, Pending>, nextId: number, info: CreateResult) {
    this.worker = worker;
    this.pending = pending;
    this.nextId = nextId;
    this.provider = info.provider;
    this.fallback = info.fallback;
    this.inputNames = info.inputNames;
    this.outputNames = info.outputNames;
  }

  static async create(model: Graph | string, opts: SessionOptions = {}): Promise<WorkerSession> {
    const say = opts.onMessage ?? consoleSink;
    const file = typeof model === "string" ? undefined : await prepareModelFile(model, opts, say);
    const entry = new URL(
      import.meta.url.endsWith(".ts") ? "./worker-entry.ts" : "./worker-entry.js",
      import.meta.url,
    );
    const worker = startWorker(entry);
    const pending = new Map<number, Pending>();
    worker.on("message", (res: Response) => {
      const p = pending.get(res.id);
      if (!p) return;
      pending.delete(res.id);
      if (res.ok) p.resolve(res.result);
      else {
        const e = new Error(res.error);
        e.name = res.name;
        p.reject(e);
      }
    });
    const failAll = (e: Error) => {
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    worker.on("error", failAll);
    worker.on("exit", (code) => failAll(new Error(`session worker exited with code ${code}`)));
    // Each try (the optimized-model cache may retry) is its own request id; run ids start after them.
    let nextId = 0;
    const createIn = (modelPath: string, o: SessionOptions) => {
      const { onMessage: _drop, ...cloneable } = o;
      return new Promise<unknown>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve, reject });
        const req: Request = { id, type: "create", modelPath, options: cloneable };
        worker.postMessage(req);
      }) as Promise<CreateResult>;
    };
    try {
      // The provider loop runs here, one concrete provider per request, so a CPU fallback of `auto` also goes
      // through the optimized-model cache (which needs the Graph, not only the .onnx path).
      const { made, fallback } = await createWithProviders(model, file, opts, say, (p, o, provider) =>
        createIn(p, { ...o, executionProvider: provider }),
      );
      const info: CreateResult = { ...made, fallback };
      return new WorkerSession(worker, pending, nextId, info);
    } catch (e) {
      await worker.terminate();
      throw e;
    } finally {
      await file?.cleanup();
    }
  }

  private call(req: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      this.worker.postMessage(req, transfer);
    });
  }

  async run(
    feeds: Record<string, HostTensor>,
    outputNames?: readonly string[],
    options: RunOptions = {},
  ): Promise<Record<string, HostTensor>> {
    const names = options.transfer === "all" ? Object.keys(feeds) : (options.transfer ?? []);
    const moved = transferables(names.map((n) => feeds[n]).filter((t) => t !== undefined));
    const req: Request = {
      id: this.nextId++,
      type: "run",
      feeds,
      outputNames: outputNames ? [...outputNames] : undefined,
    };
    return (await this.call(req, moved)) as Record<string, HostTensor>;
  }

  async endProfiling(): Promise<void> {
    await this.call({ id: this.nextId++, type: "endProfiling" });
  }

  /** Releases the session and stops the worker. */
  async release(): Promise<void> {
    try {
      await this.call({ id: this.nextId++, type: "release" });
    } finally {
      await this.worker.terminate();
    }
  }
}
