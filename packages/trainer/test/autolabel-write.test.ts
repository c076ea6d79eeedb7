import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { splitRecords } from "../src/autolabel/caption-store.ts";
import { captionHash, MANIFEST_RELATIVE_PATH, readManifest } from "../src/autolabel/manifest.ts";
import { type AutoLabelOptions, autoLabel } from "../src/autolabel/run.ts";
import { loadCaptions } from "../src/dataset/captions.ts";
import { discoverImages } from "../src/dataset/discover.ts";
import { solidPng, tempDir, writeTinyTagger } from "./autolabel.helpers.ts";

const RED = "red background, long hair, ^_^, simple background";
const BLUE = "hatsune miku \\(cosplay\\), blue background, long hair, ^_^, simple background";

/** red.png, blue.png, 10_style/red2.png, a corrupt picture, and a tagger with a free batch dimension. */
async function dataset(): Promise<{ dir: string; model: string }> {
  const root = await tempDir("al-write-");
  const dir = join(root, "data");
  await mkdir(join(dir, "10_style"), { recursive: true });
  await solidPng(join(dir, "red.png"), 40, 40, [255, 0, 0]);
  await solidPng(join(dir, "blue.png"), 20, 20, [0, 0, 255]);
  await solidPng(join(dir, "10_style", "red2.png"), 30, 30, [250, 5, 5]);
  await writeFile(join(dir, "corrupt.png"), Buffer.from("\x89PNG\r\n\x1a\n broken"));
  const model = await writeTinyTagger(join(root, "tagger"), 32, "dynamic");
  return { dir, model };
}

const run = (dir: string, model: string, o: Partial<AutoLabelOptions> = {}) =>
  autoLabel({ input: dir, model, format: "csv", tagger: { batchSize: 2 }, ...o });

async function csvCaptions(dir: string): Promise<Map<string, string>> {
  // Read back with the trainer's own caption loader: what training will see.
  const { images } = await discoverImages(dir, 1);
  const r = await loadCaptions(images, { dataDir: dir, captionExtension: ".txt" });
  return new Map([...r.captions].map(([p, c]) => [p.slice(dir.length + 1), c]));
}

test("metadata.csv: new captions with prefix/suffix, untouched rows kept byte for byte, corrupt picture listed", async () => {
  const { dir, model } = await dataset();
  const csvPath = join(dir, "metadata.csv");
  // A person's caption with quoted commas and a doubled quote, an unrelated row, LF line ends, a BOM.
  const before =
    '\uFEFFfilename,prompt\nblue.png,"my own words, with ""quotes"", kept"\nold/gone.png,  "a, b"\n';
  await writeFile(csvPath, before);
  const report = await run(dir, model, { prefix: "mystyle, ink wash", suffix: "masterpiece" });
  assert.deepEqual(Object.fromEntries(Object.entries(report.counts).filter(([, n]) => n > 0)), {
    written: 2,
    kept: 1,
    failed: 1,
  });
  assert.match(report.images.find((i) => i.image === "corrupt.png")?.error ?? "", /corrupt\.png/);
  const after = await readFile(csvPath, "utf8");
  assert.ok(after.startsWith(before), `untouched rows must stay byte for byte:\n${after}`);
  const added = splitRecords(after.slice(before.length)).map((r) => r.raw);
  assert.deepEqual(added, [
    `red.png,"mystyle, ink wash, ${RED}, masterpiece"`,
    `10_style/red2.png,"mystyle, ink wash, ${RED}, masterpiece"`,
  ]);
  assert.equal(after.slice(before.length).includes("\r"), false, "new rows use the file's own line ends");
  const captions = await csvCaptions(dir);
  assert.equal(captions.get("blue.png"), 'my own words, with "quotes", kept');
  assert.equal(captions.get("red.png"), `mystyle, ink wash, ${RED}, masterpiece`);
  const manifest = await readManifest(dir);
  assert.deepEqual(Object.keys(manifest.captions).sort(), [
    "metadata.csv#10_style/red2.png",
    "metadata.csv#red.png",
  ]);
  assert.equal(
    manifest.captions["metadata.csv#red.png"].sha256,
    captionHash(`mystyle, ink wash, ${RED}, masterpiece`),
  );
});

test("never overwrites a person's caption: edits survive re-runs, --overwrite replaces them", async () => {
  const { dir, model } = await dataset();
  await run(dir, model);
  let captions = await csvCaptions(dir);
  assert.equal(captions.get("blue.png"), BLUE);
  // A person edits one auto caption; a re-run with other settings replaces only auto-label's own captions.
  const csvPath = join(dir, "metadata.csv");
  const text = await readFile(csvPath, "utf8");
  await writeFile(csvPath, text.replace(`blue.png,"${BLUE}"`, 'blue.png,"1girl, blue, edited by hand"'));
  const second = await run(dir, model, { prefix: "mystyle", tags: { generalThreshold: 0.55 } });
  assert.equal(second.counts.kept, 1);
  assert.equal(second.counts.replaced, 2);
  assert.equal(
    second.images.find((i) => i.image === "blue.png")?.tags,
    undefined,
    "kept pictures are not run",
  );
  captions = await csvCaptions(dir);
  assert.equal(captions.get("blue.png"), "1girl, blue, edited by hand");
  assert.equal(captions.get("red.png"), "mystyle, red background, long hair");
  // Same settings again: nothing changes.
  const third = await run(dir, model, { prefix: "mystyle", tags: { generalThreshold: 0.55 } });
  assert.equal(third.counts.unchanged, 2);
  const overwritten = await run(dir, model, { overwrite: true });
  assert.equal(overwritten.counts.overwritten, 1);
  captions = await csvCaptions(dir);
  assert.equal(captions.get("blue.png"), BLUE);
});

test("CSV mode: a hand-written sidecar the trainer would read is not hidden by a new row", async () => {
  const { dir, model } = await dataset();
  // Headerless CSV with CRLF and no final line end; blue.png has no row but a hand-written .txt.
  await writeFile(join(dir, "metadata.csv"), 'old.png,"x, y"\r\nred.png,');
  await writeFile(join(dir, "blue.txt"), "hand written sidecar");
  const report = await run(dir, model);
  assert.equal(report.counts.kept, 1);
  assert.equal(report.counts.written, 2, "red.png's empty caption and red2.png are written");
  const text = await readFile(join(dir, "metadata.csv"), "utf8");
  assert.equal(text, `old.png,"x, y"\r\nred.png,"${RED}"\r\n10_style/red2.png,"${RED}"\r\n`);
  assert.equal((await csvCaptions(dir)).get("blue.png"), "hand written sidecar");
});

test("--dry-run computes the captions and writes nothing", async () => {
  const { dir, model } = await dataset();
  const report = await run(dir, model, { dryRun: true });
  assert.equal(report.images.find((i) => i.image === "red.png")?.caption, RED);
  assert.equal(report.counts.written, 3);
  assert.deepEqual((await readdir(dir)).sort(), ["10_style", "blue.png", "corrupt.png", "red.png"]);
});

test("sidecar captions with a chosen extension follow the same rule", async () => {
  const { dir, model } = await dataset();
  await writeFile(join(dir, "blue.caption"), "hand written\n");
  const report = await run(dir, model, { format: "txt", captionExtension: ".caption" });
  assert.equal(report.counts.written, 2);
  assert.equal(report.counts.kept, 1);
  assert.equal(await readFile(join(dir, "blue.caption"), "utf8"), "hand written\n");
  assert.equal(await readFile(join(dir, "red.caption"), "utf8"), RED);
  assert.equal(await readFile(join(dir, "10_style", "red2.caption"), "utf8"), RED);
  assert.ok(!existsSync(join(dir, "metadata.csv")));
  // An empty sidecar holds nothing a person wrote: it is filled.
  await writeFile(join(dir, "blue.caption"), "  \n");
  await run(dir, model, { format: "txt", captionExtension: ".caption" });
  assert.equal(await readFile(join(dir, "blue.caption"), "utf8"), BLUE);
  const manifest = JSON.parse(await readFile(join(dir, MANIFEST_RELATIVE_PATH), "utf8"));
  assert.deepEqual(Object.keys(manifest.captions).sort(), [
    "10_style/red2.caption",
    "blue.caption",
    "red.caption",
  ]);
});

test("the CLI prints a JSON report and names a broken model in one error line", async () => {
  const { dir, model } = await dataset();
  const cli = fileURLToPath(new URL("../src/cli/auto-label.ts", import.meta.url));
  const ok = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      cli,
      "--input",
      dir,
      "--model",
      model,
      "--format",
      "txt",
      "--max-tags",
      "1",
      "--suffix",
      "x",
      "--json",
    ],
    { encoding: "utf8" },
  );
  assert.equal(ok.status, 0, ok.stderr);
  const report = JSON.parse(ok.stdout);
  assert.equal(report.counts.written, 3);
  assert.equal(await readFile(join(dir, "red.txt"), "utf8"), "red background, x");
  const bad = spawnSync(
    process.execPath,
    ["--import", "tsx", cli, "--input", dir, "--model", dir, "--json"],
    {
      encoding: "utf8",
    },
  );
  assert.equal(bad.status, 1);
  assert.match(JSON.parse(bad.stderr.trim().split("\n").pop() ?? "{}").error, /model\.onnx: not found/);
});
