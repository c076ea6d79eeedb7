/**
 * The UNet-with-LoRA graph is differentiable end to end: autodiff's grad() appended to the forward graph gives the
 * loss mean((unet(noisy) - target)^2) and the gradient of every LoRA down/up input, which must match PyTorch's
 * (05_lora_unet grad.*) within 1e-3 relative Frobenius error per tensor, as the issue requires (built with
 * gradient checkpointing, so the recomputation path is what is checked); and the same graph
 * with trainable LoRA inputs, turned into one AdamW training step by optim/appendTrainStep, must leave every
 * parameter within 1e-5 of PyTorch's after one step.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { kohyaName } from "@lora-studio/prompt-lora";
import { CHECKPOINT_DISABLED_OPTIMIZERS, grad } from "../src/autodiff/grad.ts";
import { checkpointSegments } from "../src/autodiff/marks.ts";
import { mul, reduceMean, sub } from "../src/graph/ops/index.ts";
import { openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { loraInputNames } from "../src/nn/lora.ts";
import { appendTrainStep, initialTrainState } from "../src/optim/train-step.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { f32, loadReference, runOnce, TINY, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

test("05 LoRA gradients through the whole UNet (checkpointed resnets/transformers) match PyTorch within 1e-3", async () => {
  const sidecar = JSON.parse(readFileSync(`${TINY}reference/05_lora_unet.json`, "utf8"));
  const modules: string[] = sidecar.params.modules;
  const rank: number = sidecar.params.rank;
  const alpha: number = sidecar.params.alpha;
  const ref = await loadReference("05_lora_unet");
  const ck = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  const [n, c, h, w] = ref.shape("noisy_latents");
  const { ctx } = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: n,
    height: h,
    width: w,
    timestepDType: "int64",
    lora: { component: "unet", ranks: new Map(modules.map((m) => [m, rank] as [string, number])) },
    gradientCheckpointing: true,
  });
  assert.ok(checkpointSegments(ctx.b).length >= 11 + 15, "every resnet and transformer is a segment");
  const b = ctx.b;
  const out = b.outputs.find((v) => v.name === "out");
  assert.ok(out);
  const target = b.input("target", "float32", [n, c, h, w]);
  const diff = sub(out, target);
  const loss = reduceMean(mul(diff, diff), undefined, false);
  const params = ctx.loraInputs.flatMap((l) => [l.down, l.up]);
  const grads = grad(b, loss, params);
  b.output(loss, "loss");
  grads.forEach((g, i) => {
    b.output(g, `grad.${params[i].name}`);
  });

  const feeds: Record<string, HostTensor> = {
    sample: f32([n, c, h, w], ref.f32("noisy_latents")),
    timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
    encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
    target: f32([n, c, h, w], ref.f32("target")),
  };
  const refNames = new Map<string, string>();
  for (const m of modules) {
    const names = loraInputNames("unet", m);
    const k = kohyaName("unet", m);
    for (const [input, kohya] of [
      [names.down, `${k}.lora_down.weight`],
      [names.up, `${k}.lora_up.weight`],
    ]) {
      feeds[input] = f32(ref.shape(kohya), ref.f32(kohya));
      refNames.set(input, `grad.${kohya}`);
    }
    feeds[names.scale] = f32([], Float32Array.of(alpha / rank));
  }
  const r = await runOnce(b.build(), feeds, [...CHECKPOINT_DISABLED_OPTIMIZERS]);
  await ck.close();

  assert.ok(Math.abs((r.loss.data[0] as number) - ref.f32("loss")[0]) <= 1e-5 * ref.f32("loss")[0]);
  assert.equal(refNames.size, 2 * modules.length);
  for (const [input, refName] of refNames) {
    const got = r[`grad.${input}`].data as Float32Array;
    const want = ref.f32(refName);
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (got[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    assert.ok(den > 0 && Math.sqrt(num / den) <= 1e-3, `${refName}: relative error ${Math.sqrt(num / den)}`);
  }
});

test("05 one AdamW step on the trainable LoRA inputs matches PyTorch's parameters within 1e-5", async () => {
  const sidecar = JSON.parse(readFileSync(`${TINY}reference/05_lora_unet.json`, "utf8"));
  const modules: string[] = sidecar.params.modules;
  const rank: number = sidecar.params.rank;
  const opt = sidecar.params.optimizer;
  const ref = await loadReference("05_lora_unet");
  const ck = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  const [n, c, h, w] = ref.shape("noisy_latents");
  const ranks = new Map(modules.map((m) => [m, rank] as [string, number]));
  const { ctx } = buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: n,
    height: h,
    width: w,
    timestepDType: "int64",
    lora: { component: "unet", ranks, trainable: true },
  });
  const b = ctx.b;
  const out = b.outputs.find((v) => v.name === "out");
  assert.ok(out);
  const target = b.input("target", "float32", [n, c, h, w]);
  const diff = sub(out, target);
  const step = appendTrainStep(b, {
    loss: reduceMean(mul(diff, diff), undefined, false),
    params: ctx.loraInputs.flatMap((l) => [l.down, l.up]),
    optimizer: {
      kind: "adamw",
      beta1: opt.betas[0],
      beta2: opt.betas[1],
      eps: opt.eps,
      weightDecay: opt.weight_decay,
    },
  });
  const initial = new Map<string, Float32Array>();
  const kohyaOf = new Map<string, string>();
  const feeds: Record<string, HostTensor> = {
    sample: f32([n, c, h, w], ref.f32("noisy_latents")),
    timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
    encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
    target: f32([n, c, h, w], ref.f32("target")),
    [step.lrInputs.default]: f32([], Float32Array.of(opt.lr)),
  };
  for (const m of modules) {
    const k = kohyaName("unet", m);
    for (const [part, kohya] of [
      ["down", `${k}.lora_down.weight`],
      ["up", `${k}.lora_up.weight`],
    ]) {
      initial.set(`lora.unet.${m}.${part}`, ref.f32(kohya));
      kohyaOf.set(`lora.unet.${m}.${part}`, kohya);
    }
    feeds[loraInputNames("unet", m).scale] = f32([], Float32Array.of(sidecar.params.alpha / rank));
  }
  for (const [name, t] of initialTrainState(step, initial)) feeds[`state_in.${name}`] = t;
  const r = await runOnce(b.build(), feeds);
  await ck.close();

  assert.equal(kohyaOf.size, 2 * modules.length);
  for (const [state, kohya] of kohyaOf) {
    const got = r[`state_out.${state}`]?.data as Float32Array;
    const want = ref.f32(`after_adamw.${kohya}`);
    assert.ok(got, `no state_out.${state}`);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    assert.ok(worst <= 1e-5, `${kohya}: max|diff| ${worst} after one AdamW step`);
    assert.notDeepEqual(got, ref.f32(kohya), `${kohya} did not move`);
  }
});
