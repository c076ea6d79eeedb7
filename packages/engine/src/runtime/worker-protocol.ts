/** Messages between WorkerSession (main thread) and worker-entry.ts (the worker). */
import type { SessionOptions } from "./session.ts";
import type { HostData, HostTensor } from "./tensor.ts";

export type WorkerSessionOptions = Omit<SessionOptions, "onMessage">;

export type Request =
  | { id: number; type: "create"; modelPath: string; options: WorkerSessionOptions }
  | { id: number; type: "run"; feeds: Record<string, HostTensor>; outputNames?: string[] }
  | { id: number; type: "endProfiling" }
  | { id: number; type: "release" };

export interface CreateResult {
  provider: string;
  fallback?: string;
  inputNames: string[];
  outputNames: string[];
}

export type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string; name: string };

/**
 * The ArrayBuffers to list in postMessage's transfer list so tensors move instead of being copied: each buffer
 * once, and only buffers a tensor owns entirely (a view into a shared pool, e.g. a small Buffer, would detach its
 * neighbours, so such tensors are copied by structured clone instead).
 */
export function transferables(tensors: Iterable<HostTensor>): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const t of tensors) {
    const d: HostData = t.data;
    if (d.buffer instanceof ArrayBuffer && d.byteOffset === 0 && d.byteLength === d.buffer.byteLength)
      out.add(d.buffer);
  }
  return [...out];
}
