/**
 * Builds the demo base model (tiny SD1 architecture) with this engine and writes it to
 * packages/trainer/assets/demo-base/ (or --out DIR). Deterministic for a given --seed and step counts.
 *   npx tsx packages/trainer/scripts/build-demo-base.ts [--out DIR] [--seed N] [--vae-steps N] [--unet-steps N]
 *     [--refine-steps N]
 * With --refine-from BASE.safetensors, runs only the last stage (the VAE decoder refinement) on that base.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { refineDemoBase } from "../src/demo/base-refine.ts";
import { buildDemoBase } from "../src/demo/build-base.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    seed: { type: "string" },
    pictures: { type: "string" },
    "vae-steps": { type: "string" },
    "unet-steps": { type: "string" },
    "refine-steps": { type: "string" },
    "refine-from": { type: "string" },
    threads: { type: "string" },
  },
});
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const out = values.out ?? fileURLToPath(new URL("../assets/demo-base/", import.meta.url));
const log = (line: string) => console.log(line);
const report =
  values["refine-from"] !== undefined
    ? await refineDemoBase(values["refine-from"], out, {
        refineSteps: num(values["refine-steps"]),
        threads: num(values.threads),
        log,
      })
    : await buildDemoBase(out, {
        seed: num(values.seed),
        pictures: num(values.pictures),
        vaeSteps: num(values["vae-steps"]),
        unetSteps: num(values["unet-steps"]),
        refineSteps: num(values["refine-steps"]),
        threads: num(values.threads),
        log,
      });
console.log(JSON.stringify(report, null, 2));
