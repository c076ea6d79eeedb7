/**
 * fp16 LoRA training on the tiny SD1 UNet:
 * - the LoRA gradients of an fp16-compute UNet (float32 master down/up cast in the graph, loss in float32,
 *   scaled by 2^12 against fp16 underflow and unscaled in float32) agree with PyTorch's float32 gradients
 *   (05_lora_unet grad.*) within 3e-2 relative Frobenius error per tensor. Why 3e-2: the forward outputs carry
 *   ~1e-3 relative fp16 error (models-mixed-precision.test.ts), and a gradient goes through the forward AND the
 *   backward chain, where every fp16 activation gradient is rounded again (u = 2^-11 per op), so errors of a
 *   few 1e-3 for large tensors and up to ~1e-2 for the smallest ones are expected (measured: worst 8.4e-3). The
 *   same graph in float32 stays under 1e-3 (models-lora-grad.test.ts; measured worst 5.5e-6), so the worst fp16
 *   error must also exceed 1e-4: fp16 really ran;
 * - buildLoraTrainStep({ computeDType: "float16" }) trains: on one fixed batch the loss falls (LoRA on the
 *   up-block attentions and one resnet conv only, so the backward pass stays short and the test fast);
 * - every fp16 value in the inference and training graphs feeds only ops that CUDA runs in fp16.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { kohyaName } from "@lora-studio/prompt-lora";
import { grad } from "../src/autodiff/grad.ts";
import type { Graph } from "../src/graph/ir.ts";
import { div, mul, reduceMean, sub } from "../src/graph/ops/index.ts";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { type Checkpoint, openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import { loraInputNames } from "../src/nn/lora.ts";
import type { ComputeDType } from "../src/nn/module.ts";
import { initialTrainState } from "../src/optim/train-step.ts";
import { Session } from "../src/runtime/session.ts";
import { type HostTensor, hostTensor } from "../src/runtime/tensor.ts";
import { TrainStepRunner } from "../src/runtime/train-step.ts";
import { kohyaLoraInit } from "../src/training/lora-init.ts";
import { buildLoraTrainStep } from "../src/training/lora-train-step.ts";
import { f32, loadReference, runOnce, TINY, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

const sidecar = JSON.parse(readFileSync(`${TINY}reference/05_lora_unet.json`, "utf8"));
const MODULES: string[] = sidecar.params.modules;
const RANK: number = sidecar.params.rank;
const ALPHA: number = sidecar.params.alpha;
const STEPS = 15;

/**
 * Ops allowed to touch an fp16 value: the CUDA fp16 kernels listed in shared/docs/onnxruntime-node-facts.md,
 * plus ops the CUDA provider registers for every (fixed-size) tensor type or for all float types, per ORT's
 * OperatorKernels.md: Cast, Sub and Sum (the Add/Mul elementwise family), Gather/Unsqueeze/Squeeze/Identity
 * (data movement). Anything else (e.g. InstanceNormalization's or a bfloat16 op's CPU fallback) fails the test.
 */
const CUDA_FP16_OPS = new Set([
  ...[
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "Softmax",
    "InstanceNormalization",
    "Gelu",
    "Erf",
    "Sigmoid",
  ],
  ...["Tanh", "Exp", "Sin", "Cos", "Resize", "ReduceSum", "ReduceMean", "ReduceMax", "Where", "Pow", "Sqrt"],
  ...["Div", "Neg", "Mul", "Add", "Einsum", "LayerNormalization", "Concat", "Split", "Slice", "Transpose"],
  ...["Reshape", "Expand", "Attention"],
  ...["Cast", "Sub", "Sum", "Gather", "Unsqueeze", "Squeeze", "Identity"],
]);
/** Ops that must compute in float32 even in an fp16 graph (norms, softmax: see nn/layers.ts, nn/attention.ts). */
const FLOAT32_ONLY = new Set(["InstanceNormalization", "LayerNormalization", "Softmax"]);

function fp16Ops(g: Graph): Map<string, number> {
  const seen = new Map<string, number>();
  for (const n of g.nodes) {
    if (![...n.inputs, ...n.outputs].some((v) => v?.dtype === "float16")) continue;
    seen.set(n.op, (seen.get(n.op) ?? 0) + 1);
    assert.ok(CUDA_FP16_OPS.has(n.op), `${g.name}: ${n.name} (${n.op}) touches an fp16 value`);
    assert.ok(!FLOAT32_ONLY.has(n.op), `${g.name}: ${n.name} (${n.op}) must run in float32`);
  }
  return seen;
}

function boundaryIsFloat32(g: Graph): void {
  for (const v of [...g.inputs, ...g.outputs])
    assert.ok(v.dtype !== "float16", `${g.name}: graph input/output ${v.name} is fp16`);
}

describe("fp16 LoRA on the tiny SD1 UNet", () => {
  let ck: Checkpoint;
  before(async () => {
    ck = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  });
  after(async () => {
    await ck.close();
  });

  test("05 LoRA gradients in fp16 compute agree with PyTorch's float32 gradients", async () => {
    const ref = await loadReference("05_lora_unet");
    const [n, c, h, w] = ref.shape("noisy_latents");
    const feeds: Record<string, HostTensor> = {
      sample: f32([n, c, h, w], ref.f32("noisy_latents")),
      timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
      encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
      target: f32([n, c, h, w], ref.f32("target")),
    };
    const refNames = new Map<string, string>();
    for (const m of MODULES) {
      const names = loraInputNames("unet", m);
      const k = kohyaName("unet", m);
      for (const [input, kohya] of [
        [names.down, `${k}.lora_down.weight`],
        [names.up, `${k}.lora_up.weight`],
      ]) {
        feeds[input] = f32(ref.shape(kohya), ref.f32(kohya));
        refNames.set(input, `grad.${kohya}`);
      }
      feeds[names.scale] = f32([], Float32Array.of(ALPHA / RANK));
    }
    const gradients = async (computeDType: ComputeDType) => {
      const { ctx } = buildUNetGraph(ck.unet, ck.weights.unet, {
        batch: n,
        height: h,
        width: w,
        timestepDType: "int64",
        lora: { component: "unet", ranks: new Map(MODULES.map((m) => [m, RANK] as [string, number])) },
        computeDType,
      });
      const b = ctx.b;
      const out = b.outputs.find((v) => v.name === "out");
      assert.ok(out && out.dtype === "float32");
      const diff = sub(out, b.input("target", "float32", [n, c, h, w]));
      const loss = reduceMean(mul(diff, diff), undefined, false);
      const scale = 2 ** 12;
      const params = ctx.loraInputs.flatMap((l) => [l.down, l.up]);
      grad(b, mul(loss, scale), params).forEach((g, i) => {
        assert.equal(g.dtype, "float32", "master gradients come back through the Cast as float32");
        b.output(div(g, scale), `grad.${params[i].name}`);
      });
      b.output(loss, "loss");
      return runOnce(b.build(), feeds);
    };
    const r16 = await gradients("float16");
    const lossRef = ref.f32("loss")[0];
    assert.ok(Math.abs((r16.loss.data[0] as number) - lossRef) <= 1e-2 * lossRef, "fp16 loss");
    let worst16 = 0;
    for (const [input, refName] of refNames) {
      const want = ref.f32(refName);
      const err = (got: Float32Array) => {
        let [num, den] = [0, 0];
        for (let i = 0; i < want.length; i++) {
          num += (got[i] - want[i]) ** 2;
          den += want[i] ** 2;
        }
        assert.ok(den > 0, `${refName} is all zero`);
        return Math.sqrt(num / den);
      };
      const e16 = err(r16[`grad.${input}`].data as Float32Array);
      assert.ok(e16 <= 3e-2, `${refName}: fp16 relative error ${e16}`);
      worst16 = Math.max(worst16, e16);
    }
    assert.ok(worst16 > 1e-4, `fp16 gradients as exact as float32 (${worst16}): did fp16 run?`);
  });

  test("a short fp16 LoRA training run (dynamic loss scaling) lowers the loss on a fixed batch", async () => {
    const ref = await loadReference("05_lora_unet");
    const [n, c, h, w] = ref.shape("noisy_latents");
    const late = MODULES.filter((m) => m.startsWith("up_blocks."));
    const ranks = new Map(late.map((m) => [m, RANK] as [string, number]));
    ranks.set("up_blocks.2.resnets.0.conv1", 2); // a conv LoRA too (LoCon path)
    const step = buildLoraTrainStep(ck.unet, ck.weights.unet, {
      batch: n,
      height: h,
      width: w,
      ranks,
      optimizer: { kind: "adamw", weightDecay: 0 },
      maxGradNorm: 1,
      computeDType: "float16",
    });
    boundaryIsFloat32(step.graph);
    const ops = fp16Ops(step.graph);
    assert.ok(ops.has("ConvTranspose") && ops.has("Gemm"), "the backward pass runs in fp16 as well");
    assert.equal(step.step.outputs.overflow, "overflow");
    const session = await Session.create(step.graph, {
      executionProvider: "cpu",
      onMessage: () => {},
      disabledOptimizers: step.disabledOptimizers,
    });
    const runner = new TrainStepRunner(session, initialTrainState(step.step, kohyaLoraInit(step.modules, 7)));
    const feeds: Record<string, HostTensor> = {
      sample: f32([n, c, h, w], ref.f32("noisy_latents")),
      timestep: hostTensor("float32", [n], Float32Array.from(ref.int64("timesteps"), Number)),
      encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
      target: f32([n, c, h, w], ref.f32("target")),
      loss_weight: hostTensor("float32", [n], new Float32Array(n).fill(1)),
      lr: hostTensor("float32", [], Float32Array.of(1e-2)),
    };
    for (const m of step.modules) feeds[m.scaleInput] = f32([], Float32Array.of(1));
    const losses: number[] = [];
    let overflows = 0;
    for (let i = 0; i < STEPS; i++) {
      const out = await runner.step(feeds);
      assert.equal((out.nonfinite.data as Uint8Array)[0], 0, `step ${i}: non-finite`);
      if ((out.overflow.data as Uint8Array)[0] !== 0) overflows++;
      losses.push(out.loss.data[0] as number);
    }
    await session.release();
    const applied = runner.state.get("optimizer.step")?.data[0] as number;
    console.log(
      `fp16 losses ${losses[0].toFixed(4)} -> ${losses.at(-1)?.toFixed(4)}, ${overflows} overflow skips`,
    );
    assert.equal(applied + overflows, STEPS);
    assert.ok(applied >= STEPS - 5, `only ${applied} of ${STEPS} updates applied`);
    assert.equal(runner.state.get("optimizer.loss_scale")?.data[0], 65536 / 2 ** overflows);
    assert.ok((losses.at(-1) as number) < 0.8 * losses[0], `loss ${losses[0]} -> ${losses.at(-1)}`);
  });

  test("fp16 graphs: float32 boundary, fp16 only on CUDA fp16 kernels, norms/softmax in float32", () => {
    const graphs = [
      buildUNetGraph(ck.unet, ck.weights.unet, {
        batch: 1,
        height: 8,
        width: 8,
        computeDType: "float16",
        lora: { component: "unet", ranks: new Map([[MODULES[0], 4]]) },
      }).graph,
      buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: 1, computeDType: "float16" }).graph,
      buildVaeEncoderGraph(ck.vae, ck.weights.vae, {
        batch: 1,
        height: 32,
        width: 32,
        computeDType: "float16",
      }).graph,
      buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 4, width: 4, computeDType: "float16" })
        .graph,
      // The training step with gradient checkpointing (recomputed fp16 segments) and LoRA on every 05 module.
      buildLoraTrainStep(ck.unet, ck.weights.unet, {
        batch: 1,
        height: 8,
        width: 8,
        ranks: new Map(MODULES.map((m) => [m, RANK] as [string, number])),
        optimizer: { kind: "adamw" },
        gradientCheckpointing: true,
        computeDType: "float16",
      }).graph,
    ];
    for (const g of graphs) {
      boundaryIsFloat32(g);
      const ops = fp16Ops(g);
      assert.ok((ops.get("MatMul") ?? 0) + (ops.get("Gemm") ?? 0) + (ops.get("Conv") ?? 0) > 0, g.name);
      // fp32 checkpoint weights enter through one Cast each; no matmul/conv weight stays float32.
      for (const node of g.nodes)
        if (node.op === "Conv" || node.op === "Gemm")
          assert.equal(node.inputs[1]?.dtype, "float16", `${g.name}: ${node.name} computes in float32`);
    }
  });
});
