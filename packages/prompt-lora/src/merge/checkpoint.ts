/**
 * Read-only access to a model's module weights by (component, module path), whatever the checkpoint layout:
 * an original single-file checkpoint (keys from architecture/originalCheckpointTarget, row slices of fused
 * tensors included) or a diffusers folder (architecture/diffusersCheckpointTarget). Tensors are read lazily.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Component, ModelFamily, Tensor } from "../adapters/types.ts";
import { diffusersCheckpointTarget, originalCheckpointTarget } from "../architecture/index.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors/index.ts";

export interface ModuleWeights {
  readonly path: string;
  /** The module's weight as float32 with its checkpoint shape, or undefined when the checkpoint lacks it. */
  weight(component: Component, modulePath: string): Promise<Tensor | undefined>;
  close(): Promise<void>;
}

export async function openModuleWeights(
  path: string,
  family: Exclude<ModelFamily, "unknown">,
  layout?: "original" | "diffusers",
): Promise<ModuleWeights> {
  const kind = layout ?? ((await stat(path)).isDirectory() ? "diffusers" : "original");
  const files = new Map<string, Promise<SafetensorsFile | undefined>>();
  const fileAt = (rel: string): Promise<SafetensorsFile | undefined> => {
    let f = files.get(rel);
    if (!f) {
      const full = kind === "original" ? path : join(path, rel);
      f = stat(full).then(
        () => openSafetensors(full),
        () => undefined,
      );
      files.set(rel, f);
    }
    return f;
  };

  return {
    path,
    async weight(component, modulePath) {
      let file: SafetensorsFile | undefined;
      let key: string;
      let rows: [number, number] | undefined;
      try {
        if (kind === "original") {
          const t = originalCheckpointTarget(family, component, modulePath);
          file = await fileAt("");
          key = t.key;
          rows = t.rows;
        } else {
          const t = diffusersCheckpointTarget(family, component, modulePath);
          file = await fileAt(t.file);
          key = t.key;
        }
      } catch (err) {
        if (err instanceof Error && /No .* module/.test(err.message)) return undefined;
        throw err;
      }
      const info = file?.tensors.get(key);
      if (!file || !info) return undefined;
      const data = await file.readFloat32(key);
      if (!rows) return { shape: [...info.shape], data };
      const rowLength = data.length / info.shape[0];
      return {
        shape: [rows[1] - rows[0], ...info.shape.slice(1)],
        data: data.slice(rows[0] * rowLength, rows[1] * rowLength),
      };
    },
    async close() {
      for (const f of files.values()) await (await f)?.close();
    },
  };
}
