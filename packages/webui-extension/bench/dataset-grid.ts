/**
 * The Datasets grid through the real service: a folder of camera-sized JPEGs (default 40 × 3000×2000), every
 * picture fetched once as the grid does (?thumb=256) cold (sharp makes the thumbnails) and warm (cached), against
 * fetching the full files. Prints wall time and bytes sent to the page for each.
 *
 *   npx tsx packages/webui-extension/bench/dataset-grid.ts [--count 40] [--width 3000] [--height 2000]
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { serve } from "../src/server/serve.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "40" },
    width: { type: "string", default: "3000" },
    height: { type: "string", default: "2000" },
  },
});
const count = Number(values.count);
const [width, height] = [Number(values.width), Number(values.height)];

const root = await mkdtemp(join(tmpdir(), "ls-bench-grid-"));
const dataDir = join(root, "data");
const dir = join(dataDir, "datasets", "photos");
await mkdir(dir, { recursive: true });
// Noise-textured pictures, so JPEG sizes are camera-like rather than those of flat colour.
const noise = Buffer.alloc(width * height * 3);
for (let i = 0; i < noise.length; i++) {
  const px = Math.floor(i / 3);
  const [x, y] = [px % width, Math.floor(px / width)];
  const wave = 96 * Math.sin(x / 97 + (i % 3)) * Math.cos(y / 61);
  noise[i] = Math.max(0, Math.min(255, 128 + wave + (((i * 2654435761) >>> 24) - 128) * 0.25));
}
const t = performance.now();
for (let i = 0; i < count; i++) {
  const jpeg = await sharp(noise, { raw: { width, height, channels: 3 } })
    .modulate({ hue: (i * 37) % 360 })
    .jpeg({ quality: 90 })
    .toBuffer();
  await writeFile(join(dir, `photo${String(i).padStart(3, "0")}.jpg`), jpeg);
}
console.log(`wrote ${count} JPEGs of ${width}x${height} in ${((performance.now() - t) / 1000).toFixed(1)} s`);

const svc = await serve({ port: 0, dataDir, loraDir: join(root, "Lora") });
try {
  const files = Array.from({ length: count }, (_, i) => `photo${String(i).padStart(3, "0")}.jpg`);
  async function grid(query: string): Promise<{ ms: number; bytes: number }> {
    const start = performance.now();
    let bytes = 0;
    // Six at a time, as a browser fetches images from one host.
    for (let i = 0; i < files.length; i += 6) {
      const batch = await Promise.all(
        files.slice(i, i + 6).map(async (f) => {
          const res = await fetch(`${svc.url}/api/datasets/photos/images/${f}${query}`);
          if (!res.ok) throw new Error(`${f}: HTTP ${res.status}`);
          return (await res.arrayBuffer()).byteLength;
        }),
      );
      bytes += batch.reduce((a, b) => a + b, 0);
    }
    return { ms: performance.now() - start, bytes };
  }
  const show = (label: string, r: { ms: number; bytes: number }) =>
    console.log(
      `${label.padEnd(28)} ${(r.ms / 1000).toFixed(2)} s, ${(r.ms / count).toFixed(0)} ms/picture, ` +
        `${r.bytes >= 2 ** 20 ? `${(r.bytes / 2 ** 20).toFixed(1)} MiB` : `${(r.bytes / 1024).toFixed(0)} KiB`} to the page`,
    );
  show("full files", await grid(""));
  show("thumb=256, cold (sharp)", await grid("?thumb=256"));
  show("thumb=256, warm (cached)", await grid("?thumb=256"));
} finally {
  await svc.close();
  await rm(root, { recursive: true, force: true });
}
