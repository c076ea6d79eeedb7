/**
 * Training-step bench: one whole step (forward, our backward, AdamW) of the conv + GroupNorm + attention +
 * upsampling net (test/support/nets.ts) at a few sizes, with 1 and 2 intra-op threads, with and without
 * gradient checkpointing (every block a checkpoint() segment, ORT's CSE disabled).
 *
 * Each configuration runs in its own child process so its peak RSS (getrusage maxrss) is its own. ORT's CPU
 * arena keeps what it once grew, so `--no-arena` (enableCpuMemArena false) shows the live-tensor peak more
 * directly. Size D is deep (8 attention blocks) to show what checkpointing saves.
 * Usage: npx tsx packages/engine/bench/train-step.ts [--steps 3] [--sizes S,M,L,D] [--no-arena]
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { type ConvNetSize, convNet, initConvNet, mseLoss } from "../test/support/nets.ts";
import { randn, rng } from "../test/support/numeric.ts";

const SIZES: Record<string, ConvNetSize> = {
  S: { batch: 2, inChannels: 4, channels: 32, size: 32, depth: 2 },
  M: { batch: 2, inChannels: 4, channels: 64, size: 64, depth: 2 },
  L: { batch: 4, inChannels: 4, channels: 64, size: 64, depth: 3 },
  D: { batch: 2, inChannels: 4, channels: 32, size: 64, depth: 8 },
};

interface ChildArgs {
  size: string;
  arena: boolean;
  threads: number;
  checkpointing: boolean;
  steps: number;
}

interface ChildResult extends ChildArgs {
  nodes: number;
  buildMs: number;
  createMs: number;
  rssAfterCreateMiB: number;
  stepMs: number[];
  peakRssMiB: number;
  loss: number[];
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

async function child(a: ChildArgs): Promise<ChildResult> {
  const s = SIZES[a.size];
  const xShape = [s.batch, s.inChannels, s.size, s.size];
  const t0 = performance.now();
  const b = new GraphBuilder("bench");
  const params: Value[] = [];
  const y = convNet(
    b,
    b.input("x", "float32", xShape),
    s,
    (name, shape) => {
      const v = b.input(`state_in.${name}`, "float32", shape);
      params.push(v);
      return v;
    },
    a.checkpointing,
  );
  const loss = mseLoss(y, b.input("target", "float32", xShape));
  const graph = appendTrainStep(b, { loss, params, optimizer: { kind: "adamw" } });
  const g = b.build();
  const bytes = encodeModel(g);
  const t1 = performance.now();
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: a.threads, interOpNumThreads: 1 };
  if (!a.arena) options.enableCpuMemArena = false;
  if (graph.disabledOptimizers.length > 0) {
    options.extra = { optimization: { disable_specified_optimizers: graph.disabledOptimizers.join(",") } };
  }
  const session = await ort.InferenceSession.create(bytes, options);
  const t2 = performance.now();
  const rssAfterCreate = process.memoryUsage().rss;

  const rand = rng(1);
  const n = xShape.reduce((p, d) => p * d, 1);
  const init = initConvNet(s, 2);
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor("float32", Float32Array.from(randn(rand, n)), xShape),
    target: new ort.Tensor("float32", Float32Array.from(randn(rand, n)), xShape),
    lr: new ort.Tensor("float32", Float32Array.of(1e-3), []),
  };
  for (const st of graph.state) {
    const size = st.shape.reduce((p, d) => p * d, 1);
    const data = st.init === "param" ? init[st.name] : new Float32Array(size);
    feeds[`state_in.${st.name}`] = new ort.Tensor("float32", data, st.shape);
  }
  const stepMs: number[] = [];
  const losses: number[] = [];
  for (let i = 0; i <= a.steps; i++) {
    const ts = performance.now();
    const out = await session.run(feeds);
    if (i > 0) stepMs.push(performance.now() - ts); // step 0 is warm-up
    losses.push(out.loss.data[0] as number);
    for (const st of graph.state) feeds[`state_in.${st.name}`] = out[`state_out.${st.name}`];
  }
  return {
    ...a,
    nodes: g.nodes.length,
    buildMs: Math.round(t1 - t0),
    createMs: Math.round(t2 - t1),
    rssAfterCreateMiB: mib(rssAfterCreate),
    stepMs: stepMs.map((v) => Math.round(v)),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    loss: losses,
  };
}

function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

function parent(argv: string[]): void {
  const arg = (name: string, dflt: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const steps = Number(arg("--steps", "3"));
  const sizes = arg("--sizes", "S,M,L,D").split(",");
  const arena = !argv.includes("--no-arena");
  console.log(`steps timed: ${steps} (after 1 warm-up), ORT CPU arena: ${arena ? "on" : "off"}`);
  const self = fileURLToPath(import.meta.url);
  console.log(
    "size  shape (N,C,HxW,depth)   ckpt threads nodes build_ms create_ms step_ms(min/med) rss_after_create peak_rss",
  );
  for (const size of sizes) {
    for (const checkpointing of [false, true]) {
      for (const threads of [1, 2]) {
        const args: ChildArgs = { size, arena, threads, checkpointing, steps };
        const r = spawnSync(process.execPath, ["--import", "tsx", self, "--child", JSON.stringify(args)], {
          encoding: "utf8",
          maxBuffer: 1 << 24,
        });
        const line = r.stdout.split("\n").find((l) => l.startsWith("{"));
        if (r.status !== 0 || !line) {
          console.log(`${size} ckpt=${checkpointing} threads=${threads}: failed\n${r.stderr}`);
          continue;
        }
        const res = JSON.parse(line) as ChildResult;
        const s = SIZES[size];
        console.log(
          [
            size.padEnd(5),
            `${s.batch},${s.channels},${s.size}x${s.size},${s.depth}`.padEnd(23),
            (checkpointing ? "yes" : "no").padEnd(4),
            String(threads).padEnd(7),
            String(res.nodes).padEnd(5),
            String(res.buildMs).padEnd(8),
            String(res.createMs).padEnd(9),
            `${Math.min(...res.stepMs)}/${median(res.stepMs)}`.padEnd(16),
            `${res.rssAfterCreateMiB} MiB`.padEnd(16),
            `${res.peakRssMiB} MiB`,
          ].join(" "),
        );
      }
    }
  }
}

const i = process.argv.indexOf("--child");
if (i >= 0) {
  const result = await child(JSON.parse(process.argv[i + 1]) as ChildArgs);
  console.log(JSON.stringify(result));
} else {
  parent(process.argv.slice(2));
}
