/**
 * Full-size SD1.5 bench. Generates an fp16 checkpoint with the real SD1.5 names and shapes
 * (shared/fixtures/sd15-original-keys.json; pseudo-random N(0, 0.02) data, written once to a temp folder), loads
 * it, builds the UNet, text-encoder and VAE graphs and checks every key is consumed, then measures in separate
 * child processes (so each peak RSS is its own): session creation and one UNet forward (batch 1), and one rank-8
 * LoRA training step (kohya's default UNet modules, AdamW, forward + backward + update in one graph) with and
 * without gradient checkpointing.
 *
 *   npx tsx packages/engine/bench/sd15.ts [--forward 64] [--train 32,64] [--model PATH] [--keep]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSyntheticCheckpoint } from "@lora-studio/prompt-lora";
import { CHECKPOINT_DISABLED_OPTIMIZERS } from "../src/autodiff/grad.ts";
import { mul, reduceMean, sub } from "../src/graph/ops/index.ts";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { architectureFor } from "../src/models/loader/original-keys.ts";
import { kohyaLoraTargets } from "../src/models/lora-targets.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import { appendTrainStep, initialTrainState } from "../src/optim/train-step.ts";
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

async function generate(path: string): Promise<void> {
  const t = performance.now();
  await writeSyntheticCheckpoint(MANIFEST, path, { dtype: "F16" });
  console.log(`generated ${path} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

interface ChildResult {
  label: string;
  nodes: number;
  buildMs: number;
  createMs: number;
  firstRunMs: number;
  secondRunMs: number;
  peakRssMiB: number;
}

async function child(
  model: string,
  kind: "forward" | "train",
  latent: number,
  ckpt: boolean,
): Promise<ChildResult> {
  const ck = await openCheckpoint(model);
  let t = performance.now();
  const modules = architectureFor(ck.unet, ck.textEncoder, "cond_stage_model.transformer.").modules;
  const lora =
    kind === "train" ? { ...kohyaLoraTargets(modules, "unet", { rank: 8 }), trainable: true } : undefined;
  const { ctx, graph: fwd } = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: 1,
    height: latent,
    width: latent,
    lora,
    gradientCheckpointing: ckpt,
  });
  const feeds: Record<string, HostTensor> = unetBenchFeeds(latent);
  let graph = fwd;
  if (kind === "train") {
    const b = ctx.b;
    const out = b.outputs[0];
    const target = b.input("target", "float32", out.shape as number[]);
    const d = sub(out, target);
    const step = appendTrainStep(b, {
      loss: reduceMean(mul(d, d), undefined, false),
      params: ctx.loraInputs.flatMap((l) => [l.down, l.up]),
      optimizer: { kind: "adamw", weightDecay: 0.01 },
    });
    graph = b.build();
    feeds.target = { dtype: "float32", shape: [...out.shape], data: new Float32Array(4 * latent * latent) };
    feeds[step.lrInputs.default] = { dtype: "float32", shape: [], data: Float32Array.of(1e-4) };
    const init = new Map<string, Float32Array>();
    for (const l of ctx.loraInputs)
      for (const p of [l.down, l.up])
        init.set(
          p.name.slice("state_in.".length),
          new Float32Array(p.shape.reduce((a, x) => a * x, 1)).fill(0.01),
        );
    for (const [name, v] of initialTrainState(step, init)) feeds[`state_in.${name}`] = v;
    for (const l of ctx.loraInputs)
      feeds[l.scale.name] = { dtype: "float32", shape: [], data: Float32Array.of(1) };
  }
  const buildMs = performance.now() - t;
  t = performance.now();
  const s = await Session.create(graph, {
    executionProvider: "cpu",
    onMessage: () => {},
    disabledOptimizers: ckpt ? [...CHECKPOINT_DISABLED_OPTIMIZERS] : undefined,
  });
  const createMs = performance.now() - t;
  t = performance.now();
  await s.run(feeds, kind === "train" ? ["loss"] : ["out"]);
  const firstRunMs = performance.now() - t;
  t = performance.now();
  await s.run(feeds, kind === "train" ? ["loss"] : ["out"]);
  const secondRunMs = performance.now() - t;
  await s.release();
  await ck.close();
  const label =
    kind === "forward"
      ? `UNet forward ${latent}x${latent}`
      : `LoRA r8 step ${latent}x${latent}${ckpt ? " ckpt" : ""}`;
  return {
    label,
    nodes: graph.nodes.length,
    buildMs,
    createMs,
    firstRunMs,
    secondRunMs,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") {
    const [model, kind, latent, ckpt] = process.argv.slice(3);
    const r = await child(model, kind as "forward" | "train", Number(latent), ckpt === "1");
    console.log(`RESULT ${JSON.stringify(r)}`);
    return;
  }
  const dir = join(tmpdir(), "lora-studio-bench-sd15");
  let model = arg("model", "");
  if (!model) {
    mkdirSync(dir, { recursive: true });
    model = join(dir, "v1-5-synthetic-fp16.safetensors");
    if (!existsSync(model)) await generate(model);
  }
  const ck = await openCheckpoint(model);
  let t = performance.now();
  buildUNetGraph(ck.unet, ck.weights.unet, { batch: 1, height: 64, width: 64 });
  buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: 1 });
  buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 512, width: 512 });
  buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 64, width: 64 });
  console.log(
    `${ck.family}: 4 graphs built in ${(performance.now() - t).toFixed(0)} ms; unused tensors: ${ck.unused().length}`,
  );
  await ck.close();
  const runs: [string, number, boolean][] = [];
  for (const l of arg("forward", "64").split(",").filter(Boolean)) runs.push(["forward", Number(l), false]);
  for (const l of arg("train", "32,64").split(",").filter(Boolean))
    for (const c of [false, true]) runs.push(["train", Number(l), c]);
  const self = fileURLToPath(import.meta.url);
  console.log("config | nodes | build ms | session create ms | 1st run ms | 2nd run ms | peak RSS MiB");
  for (const [kind, latent, ckpt] of runs) {
    t = performance.now();
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", self, "--child", model, kind, String(latent), ckpt ? "1" : "0"],
      {
        encoding: "utf8",
        maxBuffer: 1 << 24,
      },
    );
    const line = r.stdout.split("\n").find((x) => x.startsWith("RESULT "));
    if (!line) {
      console.log(`${kind} ${latent} ${ckpt ? "ckpt" : ""}: failed (${r.status}) ${r.stderr.slice(-800)}`);
      continue;
    }
    const x = JSON.parse(line.slice(7)) as ChildResult;
    console.log(
      `${x.label} | ${x.nodes} | ${x.buildMs.toFixed(0)} | ${x.createMs.toFixed(0)} | ${x.firstRunMs.toFixed(0)} | ${x.secondRunMs.toFixed(0)} | ${x.peakRssMiB.toFixed(0)}`,
    );
  }
  if (!process.argv.includes("--keep") && !arg("model", "")) rmSync(dir, { recursive: true, force: true });
}

await main();
