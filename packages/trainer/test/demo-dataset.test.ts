import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { parseCsv } from "../src/dataset/csv.ts";
import { writeDemoDataset } from "../src/demo/dataset.ts";
import { GENERIC_COLORS, PAPER } from "../src/demo/scenes.ts";

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "demo-dataset-"));
}

interface Pixels {
  data: Buffer;
  width: number;
  height: number;
}

async function pixels(path: string): Promise<Pixels> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3, `${path}: RGB without alpha`);
  return { data, width: info.width, height: info.height };
}

const hex = (h: string) => [1, 3, 5].map((i) => Number.parseInt(h.slice(i, i + 2), 16));
const PALETTE = Object.entries(GENERIC_COLORS).map(([name, h]) => ({ name, rgb: hex(h) }));

function nearestColor(p: Pixels, i: number): { name: string; dist: number } {
  let best = { name: "", dist: Number.POSITIVE_INFINITY };
  for (const c of PALETTE) {
    const d = Math.hypot(
      p.data[i * 3] - c.rgb[0],
      p.data[i * 3 + 1] - c.rgb[1],
      p.data[i * 3 + 2] - c.rgb[2],
    );
    if (d < best.dist) best = { name: c.name, dist: d };
  }
  return best;
}

async function readRows(dir: string): Promise<string[][]> {
  return parseCsv(await readFile(join(dir, "metadata.csv"), "utf8"));
}

test("same seed, same bytes; another seed, other pictures", async () => {
  const [a, b, c] = [await tempDir(), await tempDir(), await tempDir()];
  try {
    for (const kind of ["generic", "inkwash"] as const) {
      await writeDemoDataset(join(a, kind), { kind, count: 6, seed: 11 });
      await writeDemoDataset(join(b, kind), { kind, count: 6, seed: 11 });
      await writeDemoDataset(join(c, kind), { kind, count: 6, seed: 12 });
      const files = (await readdir(join(a, kind))).sort();
      assert.deepEqual(files, [...Array.from({ length: 6 }, (_, i) => `${kind}_${i}.png`), "metadata.csv"]);
      let differing = 0;
      for (const f of files) {
        const x = await readFile(join(a, kind, f));
        assert.ok(x.equals(await readFile(join(b, kind, f))), `${kind}/${f} differs between two runs`);
        if (!x.equals(await readFile(join(c, kind, f)))) differing++;
      }
      assert.ok(differing >= 5, `seed 12 should change the pictures (${differing} files differ)`);
    }
  } finally {
    for (const d of [a, b, c]) await rm(d, { recursive: true, force: true });
  }
});

test("generic captions name the background, the shape's colour and the shape", async () => {
  const dir = await tempDir();
  try {
    await writeDemoDataset(dir, { kind: "generic", count: 24, seed: 5 });
    const rows = await readRows(dir);
    assert.deepEqual(rows[0], ["filename", "prompt"]);
    assert.equal(rows.length, 25);
    const shapesSeen = new Set<string>();
    for (const [file, caption] of rows.slice(1)) {
      const m = /^an? (\w+) (circle|square|triangle) on an? (\w+) background$/.exec(caption);
      assert.ok(m, `caption "${caption}"`);
      const [, color, shape, background] = m;
      shapesSeen.add(shape);
      const p = await pixels(join(dir, file));
      assert.equal(p.width, 64);
      // Corners are background; the shape keeps off the border.
      for (const i of [0, 63, 64 * 63, 64 * 64 - 1]) {
        const n = nearestColor(p, i);
        assert.equal(n.name, background, `${file}: corner ${i} is ${n.name}, caption says ${background}`);
        assert.ok(n.dist < 3, `${file}: background is flat`);
      }
      // The pixels of the shape's colour: where they are tells the shape (fill ratio of their bounding box).
      let count = 0;
      let x0 = 64;
      let x1 = -1;
      let y0 = 64;
      let y1 = -1;
      for (let i = 0; i < 64 * 64; i++) {
        const n = nearestColor(p, i);
        if (n.name !== color || n.dist > 40) continue;
        count++;
        const [x, y] = [i % 64, Math.floor(i / 64)];
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
      assert.ok(count > 64 * 64 * 0.06, `${file}: only ${count} ${color} pixels`);
      const fill = count / ((x1 - x0 + 1) * (y1 - y0 + 1));
      const expected = { square: [0.9, 1.01], circle: [0.7, 0.86], triangle: [0.4, 0.6] }[shape] as number[];
      assert.ok(
        fill > expected[0] && fill < expected[1],
        `${file}: ${shape} fills ${fill.toFixed(2)} of its box`,
      );
    }
    assert.equal(shapesSeen.size, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("ink-wash pictures are ink on rice paper, and the moon / subject in the caption are in the picture", async () => {
  const dir = await tempDir();
  try {
    await writeDemoDataset(dir, { kind: "inkwash", count: 24, seed: 3 });
    const rows = (await readRows(dir)).slice(1);
    const paper = hex(PAPER);
    const paperLuma = (paper[0] + paper[1] + paper[2]) / 3;
    const kinds = new Set<string>();
    for (const [file, caption] of rows) {
      const m = /^inkwash style, (mountains|bamboo|a brush circle)( and moon)?$/.exec(caption);
      assert.ok(m, `caption "${caption}"`);
      kinds.add(m[1]);
      const p = await pixels(join(dir, file));
      const luma = (i: number) => (p.data[i * 3] + p.data[i * 3 + 1] + p.data[i * 3 + 2]) / 3;
      let paperLike = 0;
      let bright = 0;
      const ink: number[] = [];
      for (let i = 0; i < 64 * 64; i++) {
        const d = Math.hypot(
          p.data[i * 3] - paper[0],
          p.data[i * 3 + 1] - paper[1],
          p.data[i * 3 + 2] - paper[2],
        );
        if (d < 20) paperLike++;
        if (luma(i) > paperLuma + 10) bright++;
        if (luma(i) < 110) ink.push(i);
        // Ink is grey: no coloured pixels anywhere.
        const sat =
          Math.max(p.data[i * 3], p.data[i * 3 + 1], p.data[i * 3 + 2]) -
          Math.min(p.data[i * 3], p.data[i * 3 + 1], p.data[i * 3 + 2]);
        assert.ok(sat < 48, `${file}: pixel ${i} is coloured`);
      }
      assert.ok(paperLike > 64 * 64 * 0.3, `${file}: paper covers ${paperLike} pixels`);
      assert.ok(ink.length > 64 * 2, `${file}: ${ink.length} ink pixels`);
      assert.equal(
        bright > 20,
        m[2] !== undefined,
        `${file}: ${bright} moon-bright pixels, caption "${caption}"`,
      );
      const bottomInk = Array.from({ length: 64 }, (_, x) => 63 * 64 + x).filter((i) => luma(i) < 110).length;
      if (m[1] === "mountains") assert.ok(bottomInk > 55, `${file}: mountains reach the bottom edge`);
      else assert.ok(bottomInk < 24, `${file}: ${m[1]} leaves the bottom edge mostly paper (${bottomInk})`);
      if (m[1] === "a brush circle") {
        const cx = ink.reduce((a, i) => a + (i % 64), 0) / ink.length;
        const cy = ink.reduce((a, i) => a + Math.floor(i / 64), 0) / ink.length;
        const centre = Math.round(cy) * 64 + Math.round(cx);
        assert.ok(luma(centre) > 150, `${file}: the circle's centre is paper`);
      }
    }
    assert.equal(kinds.size, 3, "all three subjects appear in 24 pictures");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
