/**
 * Builds the demo base model (tiny SD1 architecture) with this engine and writes it to
 * packages/trainer/assets/demo-base/ (or --out DIR). Deterministic for a given --seed and step counts.
 *   npx tsx packages/trainer/scripts/build-demo-base.ts [--out DIR] [--seed N] [--vae-steps N] [--unet-steps N]
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildDemoBase } from "../src/demo/build-base.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    seed: { type: "string" },
    pictures: { type: "string" },
    "vae-steps": { type: "string" },
    "unet-steps": { type: "string" },
    threads: { type: "string" },
  },
});
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const out = values.out ?? fileURLToPath(new URL("../assets/demo-base/", import.meta.url));
const report = await buildDemoBase(out, {
  seed: num(values.seed),
  pictures: num(values.pictures),
  vaeSteps: num(values["vae-steps"]),
  unetSteps: num(values["unet-steps"]),
  threads: num(values.threads),
  log: (line) => console.log(line),
});
console.log(JSON.stringify(report, null, 2));
