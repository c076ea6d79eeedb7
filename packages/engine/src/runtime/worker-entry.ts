/** worker_thread body of WorkerSession: owns one Session and answers create/run/endProfiling/release requests. */
import { parentPort } from "node:worker_threads";
import { Session, SessionCreateError } from "./session.ts";
import { type CreateResult, type Request, type Response, transferables } from "./worker-protocol.ts";

const port = parentPort;
if (!port) throw new Error("worker-entry.ts must run inside a worker_thread");
let session: Session | undefined;

async function handle(req: Request): Promise<{ result: unknown; transfer: ArrayBuffer[] }> {
  switch (req.type) {
    case "create": {
      // One concrete provider per request and an .onnx path: anything worth saying (fallbacks, weight copies,
      // cache notes) is said by the caller's WorkerSession.create, which runs the provider loop.
      session = await Session.create(req.modelPath, { ...req.options, onMessage: () => {} });
      const result: CreateResult = {
        provider: session.provider,
        fallback: session.fallback,
        inputNames: [...session.inputNames],
        outputNames: [...session.outputNames],
      };
      return { result, transfer: [] };
    }
    case "run": {
      if (!session) throw new Error("worker session is not created");
      const out = await session.run(req.feeds, req.outputNames);
      return { result: out, transfer: transferables(Object.values(out)) };
    }
    case "endProfiling":
      session?.endProfiling();
      return { result: null, transfer: [] };
    case "release":
      await session?.release();
      session = undefined;
      return { result: null, transfer: [] };
  }
}

port.on("message", async (req: Request) => {
  let res: Response;
  let transfer: ArrayBuffer[] = [];
  try {
    const r = await handle(req);
    res = { id: req.id, ok: true, result: r.result };
    transfer = r.transfer;
  } catch (e) {
    const err = e as Error;
    // One concrete provider per create request: pass its own error up, the caller builds the summary.
    const error =
      err instanceof SessionCreateError && err.failures.length === 1 ? err.failures[0].error : err.message;
    res = { id: req.id, ok: false, error, name: err.name };
  }
  try {
    port.postMessage(res, transfer);
  } catch {
    port.postMessage(res); // a non-transferable backing store: fall back to a structured-clone copy
  }
});
