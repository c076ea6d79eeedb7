// The in-graph AdamW step against PyTorch's: the tiny-sd1 reference (05_lora_unet) holds 176 LoRA tensors, their
// gradients from torch autograd and the tensors after one torch.optim.AdamW step (lr 1e-3, betas 0.9/0.999,
// eps 1e-8, weight decay 0.01). Feeding those gradients (loss = sum(p * g), so d loss/d p = g) must reproduce the
// stepped tensors.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { readSafetensors } from "@lora-studio/prompt-lora";
import { sum } from "../src/autodiff/extra-ops.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { maxAbs, maxAbsDiff } from "./support/numeric.ts";
import { createTrainer, type Feed } from "./support/train-harness.ts";

const REF = new URL("../../../../shared/fixtures/tiny-sd1/reference/", import.meta.url);

test("AdamW step equals torch.optim.AdamW on the tiny-sd1 LoRA reference (176 tensors, 1e-6)", async () => {
  const sidecar = JSON.parse(readFileSync(new URL("05_lora_unet.json", REF), "utf8"));
  const o = sidecar.params.optimizer;
  assert.equal(o.name, "torch.optim.AdamW");
  const { tensors } = await readSafetensors(new URL("05_lora_unet.safetensors", REF).pathname);
  const names = [...tensors.keys()].filter(
    (k) => /\.lora_(down|up)\.weight$/.test(k) && !k.startsWith("grad.") && !k.startsWith("after_adamw."),
  );
  assert.equal(names.length, 176);

  const b = new GraphBuilder("reference_adamw");
  const params = names.map((n) => b.input(`state_in.${n}`, "float32", tensors.get(n)!.shape));
  const grads = names.map((n) => b.input(`grad.${n}`, "float32", tensors.get(n)!.shape));
  const loss = sum(params.map((p, i) => op.reduceSum(op.mul(p, grads[i]), undefined, false)));
  const graph = appendTrainStep(b, {
    loss,
    params,
    optimizer: {
      kind: "adamw",
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: o.weight_decay,
    },
  });
  const trainer = await createTrainer(
    encodeModel(b.build()),
    graph,
    Object.fromEntries(names.map((n) => [n, tensors.get(n)!.data])),
  );
  const batch: Record<string, Feed> = {};
  for (const n of names)
    batch[`grad.${n}`] = {
      dtype: "float32",
      shape: tensors.get(n)!.shape,
      data: tensors.get(`grad.${n}`)!.data,
    };
  const out = await trainer.step(o.lr, batch);
  assert.equal(out.nonfinite.data[0], 0);
  let worst = 0;
  for (const n of names) {
    const expected = tensors.get(`after_adamw.${n}`)!.data;
    const got = trainer.value(n);
    worst = Math.max(worst, maxAbsDiff(got, expected));
    // The step really moved the tensor (so the comparison is not trivially satisfied by p itself).
    assert.ok(maxAbsDiff(tensors.get(n)!.data, expected) > 1e-4 * maxAbs(expected));
  }
  assert.ok(worst < 1e-6, `max |diff| ${worst}`);
});
