/**
 * fp32 weight cache on a full-size SD1.5 fp16 checkpoint (synthetic: real SD1.5 names and shapes from
 * shared/fixtures/sd15-original-keys.json, pseudo-random data). Each measurement runs in its own child process so
 * its peak RSS is its own:
 *   build   - openCheckpoint converting all three components into a fresh cache folder (time, size, peak RSS);
 *   cached  - a second open (cache reused, sampled checksum verified), UNet 32x32 graph, session creation, 2 runs;
 *   in-place- the same with fp32Cache: false (fp16 weights referenced in place, cast in the graph).
 * The cached forward runs three times: optimized-model cache off (ORT optimizes the graph, as before 2026-11-22),
 * then on (the first session stores ORT's optimized graph, the second loads it: src/runtime/optimized-cache.ts).
 * The checkpoint (2 GB) and the cache (4 GB) live in a temp folder that is deleted at the end.
 *
 *   npx tsx packages/engine/bench/weight-cache.ts [--latent 32] [--keep]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSyntheticCheckpoint } from "@lora-studio/prompt-lora";
import { openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { Session } from "../src/runtime/session.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { unetBenchFeeds } from "./unet-feeds.ts";

const MANIFEST = fileURLToPath(
  new URL("../../../../shared/fixtures/sd15-original-keys.json", import.meta.url),
);

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const peakMiB = () => process.resourceUsage().maxRSS / 1024;

/** Resident MiB split into heap (RssAnon) and file-backed pages (RssFile: the memory-mapped weights, reclaimable). */
function rssSplit(): { anonMiB: number; fileMiB: number } | undefined {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN);
    return { anonMiB: Math.round(kb("RssAnon") / 1024), fileMiB: Math.round(kb("RssFile") / 1024) };
  } catch {
    return undefined;
  }
}

async function childBuild(model: string, dir: string): Promise<Record<string, unknown>> {
  const t = performance.now();
  const ck = await openCheckpoint(model, { fp32Cache: { dir, maxBytes: Number.POSITIVE_INFINITY } });
  const openMs = performance.now() - t;
  const entries = ck.fp32Cache.map((e) => ({
    component: e.component,
    built: e.built,
    gib: +(e.bytes / 2 ** 30).toFixed(2),
    buildS: +(e.buildMs / 1000).toFixed(1),
  }));
  await ck.close();
  return { openS: +(openMs / 1000).toFixed(1), entries, peakRssMiB: Math.round(peakMiB()) };
}

async function childForward(model: string, dir: string, cached: boolean, latent: number, ortCache: boolean) {
  let t = performance.now();
  const ck = await openCheckpoint(model, { fp32Cache: cached ? { dir } : false });
  const openMs = performance.now() - t;
  if (cached && ck.fp32Cache.some((e) => e.built)) throw new Error("the cache was rebuilt, not reused");
  t = performance.now();
  const { graph } = buildUNetGraph(ck.unet, ck.weights.unet, { batch: 1, height: latent, width: latent });
  const buildMs = performance.now() - t;
  const feeds: Record<string, HostTensor> = unetBenchFeeds(latent);
  t = performance.now();
  const s = await Session.create(graph, {
    executionProvider: "cpu",
    optimizedModelCache: ortCache,
    onMessage: () => {},
  });
  const createMs = performance.now() - t;
  const rssAfterCreate = process.memoryUsage().rss / 2 ** 20;
  const splitAfterCreate = rssSplit();
  t = performance.now();
  const out = await s.run(feeds, ["out"]);
  const firstRunMs = performance.now() - t;
  t = performance.now();
  await s.run(feeds, ["out"]);
  const secondRunMs = performance.now() - t;
  const data = out.out.data as Float32Array;
  let sum = 0;
  for (const v of data) sum += v;
  await s.release();
  await ck.close();
  return {
    openMs: Math.round(openMs),
    graphBuildMs: Math.round(buildMs),
    createMs: Math.round(createMs),
    rssAfterCreateMiB: Math.round(rssAfterCreate),
    splitAfterCreate,
    firstRunMs: Math.round(firstRunMs),
    secondRunMs: Math.round(secondRunMs),
    peakRssMiB: Math.round(peakMiB()),
    outputSum: sum,
  };
}

function spawnChild(args: string[]): Record<string, unknown> | undefined {
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--child", ...args],
    {
      encoding: "utf8",
      maxBuffer: 1 << 24,
    },
  );
  const line = r.stdout.split("\n").find((x) => x.startsWith("RESULT "));
  if (!line) {
    console.log(`child ${args[0]} failed (${r.status}): ${r.stderr.slice(-1500)}`);
    return undefined;
  }
  return JSON.parse(line.slice(7));
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") {
    const [kind, model, dir, latent, ortCache] = process.argv.slice(3);
    const r =
      kind === "build"
        ? await childBuild(model, dir)
        : await childForward(model, dir, kind === "cached", Number(latent), ortCache === "1");
    console.log(`RESULT ${JSON.stringify(r)}`);
    return;
  }
  const latent = arg("latent", "32");
  const root = join(tmpdir(), "lora-studio-bench-weight-cache");
  const model = join(root, "v1-5-synthetic-fp16.safetensors");
  const dir = join(root, "cache");
  mkdirSync(root, { recursive: true });
  try {
    let t = performance.now();
    await writeSyntheticCheckpoint(MANIFEST, model, { dtype: "F16" });
    console.log(`generated ${model} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    console.log("build:", JSON.stringify(spawnChild(["build", model, dir])));
    const forward: [string, string[]][] = [
      ["fp32 cache, optimized-model cache off", ["cached", model, dir, latent, "0"]],
      ["fp32 cache, optimized-model cache: first session (stores)", ["cached", model, dir, latent, "1"]],
      ["fp32 cache, optimized-model cache: later session (loads)", ["cached", model, dir, latent, "1"]],
      ["fp16 in place", ["in-place", model, dir, latent, "0"]],
    ];
    const created: string[] = [];
    for (const [label, args] of forward) {
      const r = spawnChild(args);
      console.log(`UNet ${latent}x${latent} forward, ${label}:`, JSON.stringify(r));
      created.push(`${label}: session ${r?.createMs} ms, 1st run ${r?.firstRunMs} ms, sum ${r?.outputSum}`);
    }
    console.log(
      `session creation (load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")} at the end):`,
    );
    for (const line of created) console.log(`  ${line}`);
  } finally {
    if (!process.argv.includes("--keep")) rmSync(root, { recursive: true, force: true });
  }
}

await main();
