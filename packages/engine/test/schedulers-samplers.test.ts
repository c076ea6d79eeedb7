// Sampler schedules against every schedule quantity the reference records (06 tables, 07 pipeline sidecars),
// the 07 trajectories, the denoising loop, guidance and errors (step math: schedulers-steps.test.ts).
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { readSafetensors } from "@lora-studio/prompt-lora";
import { classifierFreeGuidance, denoise, guideBatchedOutput } from "../src/schedulers/denoise.ts";
import { SchedulerError } from "../src/schedulers/errors.ts";

import { createSampler } from "../src/schedulers/samplers/index.ts";
import type { SamplerName } from "../src/schedulers/samplers/types.ts";
import { TorchCpuGenerator } from "../src/schedulers/torch-rng.ts";
import { maxDiff, schedule, unitNoise } from "./support/scheduler-oracles.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
const ref = join(fixtures, "tiny-sd1/reference");
const tables = (await readSafetensors(join(ref, "06_ddpm_add_noise.safetensors"))).tensors;
const readJson = async (name: string) =>
  JSON.parse((await readFile(join(ref, name), "utf8")).replace(/-?Infinity\b/g, "null"));

const arr = (name: string) => {
  const t = tables.get(name);
  assert.ok(t, `fixture tensor ${name}`);
  return Array.from(t.data);
};

/** Reference scheduler class -> our sampler (diffusers DDPM inference timesteps equal DDIM's). */
const byClass: Record<string, SamplerName> = {
  DDIMScheduler: "DDIM",
  DDPMScheduler: "DDIM",
  PNDMScheduler: "PNDM",
  EulerDiscreteScheduler: "Euler",
  EulerAncestralDiscreteScheduler: "Euler a",
  DPMSolverMultistepScheduler: "DPM++ 2M",
};
const noise = new TorchCpuGenerator(1);

test("every timestep / sigma table of 06_ddpm_add_noise is reproduced exactly (4 and 20 steps)", () => {
  let checked = 0;
  for (const name of tables.keys()) {
    const m = /^(timesteps|sigmas)\.(\w+)\.(\d+)$/.exec(name);
    if (!m) continue;
    const sampler = createSampler(byClass[m[2]], { schedule, steps: Number(m[3]), noise });
    const ours = m[1] === "timesteps" ? sampler.timesteps : sampler.sigmas;
    assert.ok(ours, name);
    assert.deepEqual(Array.from(ours), arr(name), name);
    checked++;
  }
  assert.equal(checked, 16);
});

test("init_noise_sigma of the 06 sidecar and every 07 pipeline sidecar, and the 07 timesteps", async () => {
  const side06 = await readJson("06_ddpm_add_noise.json");
  for (const [key, value] of Object.entries(side06.params.schedulers)) {
    const m = /^(\w+)\.(\d+)\.init_noise_sigma$/.exec(key);
    if (!m) continue;
    assert.equal(
      createSampler(byClass[m[1]], { schedule, steps: Number(m[2]), noise }).initNoiseSigma,
      value,
      key,
    );
  }
  const files = (await readdir(ref)).filter((f) => /^07_pipeline_.*\.json$/.test(f));
  assert.equal(files.length, 6);
  for (const file of files) {
    const side = await readJson(file);
    const p = side.params;
    const sampler = createSampler(byClass[p.scheduler_class], { schedule, steps: p.num_inference_steps });
    assert.equal(sampler.initNoiseSigma, p.init_noise_sigma, file);
    const rec = (await readSafetensors(join(ref, file.replace(".json", ".safetensors")))).tensors;
    assert.deepEqual(Array.from(sampler.timesteps), Array.from(rec.get("timesteps")?.data ?? []), file);
    assert.equal(side.tensors.timesteps.dtype === "F32" ? "float32" : "int64", sampler.timestepDtype, file);
    const steps = [...rec.keys()].filter((k) => k.startsWith("latents_after_step_")).length;
    assert.equal(steps, sampler.timesteps.length, `${file}: one recorded latent per model call`);
  }
});

test("Karras sigmas: rho-7 spacing between the table's sigma_min and sigma_max, ending in 0", () => {
  const s = createSampler("DPM++ 2M Karras", { schedule, steps: 10 }).sigmas;
  assert.ok(s);
  assert.equal(s[10], 0);
  assert.ok(Math.abs(s[0] - 14.614642) < 1e-4 && Math.abs(s[9] - 0.0291675) < 1e-6);
  const inv = Array.from(s.subarray(0, 10), (x) => x ** (1 / 7));
  for (let i = 1; i < 10; i++) assert.ok(Math.abs(inv[i] - inv[i - 1] - (inv[9] - inv[0]) / 9) < 1e-5);
  const ts = createSampler("DPM++ 2M Karras", { schedule, steps: 10 }).timesteps;
  assert.equal(ts[0], 999);
  assert.equal(ts[9], 0);
});

test("07 fixtures: the guided noise that DDIM's first recorded step implies reproduces PNDM's first step", async () => {
  // Both pipelines start from the same latents_in, prompt and t = 751, so their first (guided) model output is
  // the same tensor. Recover it from DDIM's recorded step with the DDIM update solved for eps, then run PNDM.
  for (const size of [32, 64]) {
    const ddim = (await readSafetensors(join(ref, `07_pipeline_ddim_${size}.safetensors`))).tensors;
    const pndm = (await readSafetensors(join(ref, `07_pipeline_pndm_${size}.safetensors`))).tensors;
    const x = ddim.get("latents_in")?.data;
    const x1 = ddim.get("latents_after_step_0")?.data;
    assert.ok(x && x1);
    assert.deepEqual(Array.from(pndm.get("latents_in")?.data ?? []), Array.from(x));
    const a = schedule.alphasCumprod[751];
    const ap = schedule.alphasCumprod[501];
    // x1 = sqrt(ap) (x - sqrt(1-a) e) / sqrt(a) + sqrt(1-ap) e  =>  e = (x1 - sqrt(ap/a) x) / (sqrt(1-ap) - sqrt(ap (1-a) / a))
    const eps = x.map(
      (v, i) => (x1[i] - Math.sqrt(ap / a) * v) / (Math.sqrt(1 - ap) - Math.sqrt((ap * (1 - a)) / a)),
    );
    const sampler = createSampler("PNDM", { schedule, steps: 4 });
    const ours = sampler.step(eps, 0, x);
    const want = pndm.get("latents_after_step_0")?.data;
    assert.ok(want);
    assert.ok(maxDiff(ours, want) <= 2e-6, `${size}: ${maxDiff(ours, want)}`);
    // And our DDIM step gives back the recorded latents from that noise (float32 round trip).
    assert.ok(maxDiff(createSampler("DDIM", { schedule, steps: 4 }).step(eps, 0, x), x1) <= 2e-6);
  }
});

test("denoise: latents scaled by init_noise_sigma, model input by 1/sqrt(sigma^2+1), one callback per call", async () => {
  const sampler = createSampler("Euler", { schedule, steps: 3 });
  const calls: { input: Float32Array; t: number }[] = [];
  let callbacks = 0;
  await denoise({
    sampler,
    latents: unitNoise,
    predict: async (input, t) => {
      calls.push({ input, t });
      return new Float32Array(input.length);
    },
    onStep: () => void callbacks++,
  });
  assert.equal(calls.length, 3);
  assert.equal(callbacks, 3);
  assert.deepEqual(
    calls.map((c) => c.t),
    [999, 499.5, 0],
  );
  const scale = sampler.initNoiseSigma / Math.sqrt(sampler.initNoiseSigma ** 2 + 1);
  assert.ok(
    maxDiff(
      calls[0].input,
      unitNoise.map((v) => v * scale),
    ) < 1e-6,
  );
  await assert.rejects(
    denoise({
      sampler: createSampler("DDIM", { schedule, steps: 2 }),
      latents: unitNoise,
      predict: async () => new Float32Array(3),
    }),
    SchedulerError,
  );
});

test("classifier-free guidance: uncond + g (cond - uncond), batch [uncond, cond]", () => {
  const u = Float32Array.from([1, 2, 3]);
  const c = Float32Array.from([2, 2, 0]);
  assert.deepEqual(Array.from(classifierFreeGuidance(u, c, 7.5)), [8.5, 2, -19.5]);
  assert.deepEqual(Array.from(classifierFreeGuidance(u, c, 1)), Array.from(c));
  assert.deepEqual(Array.from(guideBatchedOutput(Float32Array.from([1, 2, 3, 2, 2, 0]), 0)), Array.from(u));
  assert.throws(() => classifierFreeGuidance(u, Float32Array.from([1]), 2), SchedulerError);
});

test("sampler errors: unknown names, bad step counts, ancestral without noise, PNDM out of order", () => {
  assert.throws(() => createSampler("Heun", { schedule, steps: 4 }), /unknown sampler "Heun"/);
  assert.throws(() => createSampler("DDIM", { schedule, steps: 0 }), /steps/);
  assert.throws(() => createSampler("Euler", { schedule, steps: 1001 }), SchedulerError);
  assert.throws(() => createSampler("Euler a", { schedule, steps: 4 }), /noise source/);
  assert.throws(() => createSampler("DDIM", { schedule, steps: 4, eta: 1 }), /noise source/);
  const p = createSampler("PNDM", { schedule, steps: 4 });
  assert.throws(() => p.step(unitNoise, 1, unitNoise), /in order/);
});

test("timestep spacings: leading, linspace and trailing as diffusers' DDIM computes them", () => {
  const t = (spacing: "leading" | "linspace" | "trailing", steps: number) =>
    Array.from(createSampler("DDIM", { schedule, steps, spacing }).timesteps);
  assert.deepEqual(t("leading", 4), [751, 501, 251, 1]);
  assert.deepEqual(t("linspace", 4), [999, 666, 333, 0]);
  assert.deepEqual(t("trailing", 4), [999, 749, 499, 249]);
  assert.deepEqual(t("trailing", 3), [999, 666, 332]);
  const euler = createSampler("Euler", { schedule, steps: 4, spacing: "leading" });
  assert.deepEqual(Array.from(euler.timesteps), [751, 501, 251, 1]);
  const max = euler.sigmas?.[0] ?? 0;
  assert.equal(euler.initNoiseSigma, Math.fround(Math.sqrt(Math.fround(Math.fround(max * max) + 1))));
});
