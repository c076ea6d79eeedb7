/** Sampler factory by WebUI name. */
import { SchedulerError } from "../errors.ts";
import { DdimSampler } from "./ddim.ts";
import { DpmPp2mSampler } from "./dpmpp-2m.ts";
import { EulerAncestralSampler, EulerSampler } from "./euler.ts";
import { PndmSampler } from "./pndm.ts";
import { SAMPLER_NAMES, type Sampler, type SamplerName, type SamplerOptions } from "./types.ts";

export function isSamplerName(name: string): name is SamplerName {
  return (SAMPLER_NAMES as readonly string[]).includes(name);
}

/** A fresh sampler (they keep multistep history) for one run of `options.steps` steps. */
export function createSampler(name: string, options: SamplerOptions): Sampler {
  if (!isSamplerName(name)) {
    throw new SchedulerError(
      "BAD_ARGUMENT",
      "sampler",
      `unknown sampler ${JSON.stringify(name)}; known: ${SAMPLER_NAMES.join(", ")}`,
    );
  }
  switch (name) {
    case "Euler":
      return new EulerSampler(options);
    case "Euler a":
      return new EulerAncestralSampler(options);
    case "DDIM":
      return new DdimSampler(options);
    case "PNDM":
      return new PndmSampler(options);
    case "DPM++ 2M":
      return new DpmPp2mSampler({ ...options, karras: false });
    case "DPM++ 2M Karras":
      return new DpmPp2mSampler({ ...options, karras: true });
  }
}
