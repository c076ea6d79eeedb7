/**
 * txt2img through the service (POST /api/generate, job queue, in-service runner, PNG write) on the demo base:
 * wall time of the first request (opens the model and creates the sessions) and of the following ones (cached
 * sessions), and how long GET /api/health takes while a generation runs (the event loop must stay free).
 *
 *   npx tsx packages/webui-extension/bench/generate-latency.ts [--size 256] [--steps 20] [--runs 3]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { serve } from "../src/server/serve.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "256" },
    steps: { type: "string", default: "20" },
    runs: { type: "string", default: "3" },
  },
});
const size = Number(values.size);
const steps = Number(values.steps);
const runs = Number(values.runs);

const root = await mkdtemp(join(tmpdir(), "ls-bench-gen-"));
const svc = await serve({ port: 0, dataDir: join(root, "data"), loraDir: join(root, "Lora") });
const auth = { authorization: `Bearer ${svc.token}`, "content-type": "application/json" };

interface Run {
  ms: number;
  healthMaxMs: number;
  healthCount: number;
  timings: Record<string, number>;
}

async function generateOnce(seed: number): Promise<Run> {
  const t0 = performance.now();
  const res = await fetch(`${svc.url}/api/generate`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ prompt: "a red square on paper", steps, width: size, height: size, seed }),
  });
  const job = (await res.json()) as { id: string; error?: string };
  if (res.status !== 202) throw new Error(job.error);
  let healthMaxMs = 0;
  let healthCount = 0;
  for (;;) {
    const h0 = performance.now();
    await (await fetch(`${svc.url}/api/health`)).json();
    healthMaxMs = Math.max(healthMaxMs, performance.now() - h0);
    healthCount++;
    const state = svc.queue.store.get(job.id)?.state;
    if (state === "done") break;
    if (state === "failed" || state === "cancelled")
      throw new Error(`job ${state}: ${svc.queue.store.get(job.id)?.error}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const result = svc.queue.store.get(job.id)?.result as { timingsMs: Record<string, number> } | undefined;
  const timings = result?.timingsMs ?? {};
  return { ms: performance.now() - t0, healthMaxMs, healthCount, timings };
}

try {
  console.log(`demo base, ${size}x${size}, ${steps} steps Euler a, batch 1`);
  for (let i = 0; i < runs; i++) {
    const r = await generateOnce(i + 1);
    console.log(
      `${i === 0 ? "cold" : "warm"} request ${i + 1}: ${(r.ms / 1000).toFixed(2)} s; ` +
        `/api/health during it: max ${r.healthMaxMs.toFixed(1)} ms over ${r.healthCount} calls; job phases (s): ` +
        Object.entries(r.timings)
          .map(([k, v]) => `${k} ${(v / 1000).toFixed(2)}`)
          .join(", "),
    );
  }
} finally {
  await svc.close();
  await rm(root, { recursive: true, force: true });
}
