/**
 * Initial LoRA weights as kohya's networks/lora.py LoRAModule sets them: lora_down by
 * torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) (uniform in +-1/sqrt(fan_in), fan_in = in x kh x kw) and lora_up
 * zeros, so the adapter starts as an exact no-op and training moves `up` first. The uniforms come from the seeded
 * torch-compatible CPU generator, one generator per module (seed derived from the run seed and the module index),
 * so adding or removing a module does not shift the others' initial values.
 */
import { TorchCpuGenerator } from "../schedulers/torch-rng.ts";
import type { LoraModuleInfo } from "./lora-train-step.ts";

/** 32-bit FNV-1a style mix of a seed and an index (stable across runs and platforms). */
function mixSeed(seed: number, index: number): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  h = Math.imul(h ^ (index >>> 0), 0x01000193) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return h >>> 0;
}

export function kaimingUniformDown(shape: readonly number[], seed: number): Float32Array {
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const bound = 1 / Math.sqrt(fanIn);
  const n = shape.reduce((a, b) => a * b, 1);
  const u = new TorchCpuGenerator(seed).rand(n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * u[i] - 1) * bound;
  return out;
}

/** State name -> initial value for every module's down (kaiming-uniform) and up (zeros). */
export function kohyaLoraInit(modules: readonly LoraModuleInfo[], seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  modules.forEach((m, i) => {
    out.set(m.downState, kaimingUniformDown(m.downShape, mixSeed(seed, i)));
    out.set(m.upState, new Float32Array(m.upShape.reduce((a, b) => a * b, 1)));
  });
  return out;
}
