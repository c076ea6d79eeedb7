import assert from "node:assert/strict";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { autoLabel } from "../src/autolabel/run.ts";
import { buildProgram, main } from "../src/cli/auto-label.ts";
import { solidPng, tempDir, writeTinyTagger } from "./autolabel.helpers.ts";
import { colourSpec, pictures, writeTinyCaptioner } from "./autolabel-captioner.helpers.ts";

const BLUE: [number, number, number] = [0, 0, 255];

test("auto-label with captioner + tagger: 'caption, tags', prefix/suffix, a person's caption kept, a broken picture listed", async () => {
  const root = await tempDir("cap-run-");
  const model = await writeTinyCaptioner(join(root, "captioner"), colourSpec());
  const tagger = await writeTinyTagger(join(root, "tagger"), 32, "dynamic");
  const data = join(root, "data");
  await pictures(data);
  await solidPng(join(data, "mine.png"), 16, 16, BLUE);
  await writeFile(join(data, "broken.png"), Buffer.from("not a picture at all"));
  await writeFile(join(data, "metadata.csv"), 'filename,prompt\nmine.png,"my own words, keep them"\n');
  const snapshot = join(root, "snapshot.csv");
  await copyFile(join(data, "metadata.csv"), snapshot);

  // The tagger alone (dry run) gives the tag part the combined caption must carry after the sentence.
  const tagsOnly = await autoLabel({ input: data, model: tagger, format: "csv", dryRun: true });
  const tagsOf = (name: string) => tagsOnly.images.find((i) => i.image === name)?.caption;
  assert.ok(tagsOf("red.png")?.includes("red background"));

  const report = await autoLabel({
    input: data,
    model: tagger,
    captioner: model,
    captionerOptions: { batchSize: 2 },
    format: "csv",
    prefix: "mystyle",
    suffix: "masterpiece",
  });
  const by = Object.fromEntries(report.images.map((i) => [i.image, i]));
  assert.equal(by["red.png"].sentence, "a red square again");
  assert.equal(by["red.png"].caption, `mystyle, a red square again, ${tagsOf("red.png")}, masterpiece`);
  assert.equal(by["blue.png"].caption, `mystyle, a blue square, ${tagsOf("blue.png")}, masterpiece`);
  assert.equal(by["mine.png"].action, "kept");
  assert.equal(by["broken.png"].action, "failed");
  assert.match(by["broken.png"].error ?? "", /broken\.png/);
  assert.equal(report.counts.written, 2);
  assert.equal(report.captioner?.decoderKind, "plain");
  const csv = await readFile(join(data, "metadata.csv"), "utf8");
  assert.ok(csv.startsWith(await readFile(snapshot, "utf8")), "the person's row is kept byte for byte");
  assert.match(csv, /red\.png,"mystyle, a red square again, .*masterpiece"/);
  // The manifest records which models wrote the captions.
  const manifest = JSON.parse(await readFile(join(data, ".lora-studio", "autolabel.json"), "utf8"));
  assert.match(
    Object.values(manifest.captions as Record<string, { source: string }>)[0].source,
    /^captioner:captioner\+wd14-tagger:tagger$/,
  );

  // --overwrite replaces the person's caption too (captioner only this time).
  const again = await autoLabel({ input: data, captioner: model, format: "csv", overwrite: true });
  assert.equal(again.images.find((i) => i.image === "mine.png")?.caption, "a blue square");
  assert.equal(again.model, undefined);
});

test("the CLI: --captioner in --help, the caption/tags order explained, and a run through the worker", async () => {
  let help = "";
  const program = buildProgram(async () => {});
  program.configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => (help += s) });
  assert.throws(() => program.parse(["--help"], { from: "user" }));
  help = help.replace(/\s+/g, " ");
  assert.match(help, /--captioner <dir>/);
  assert.match(help, /"caption, tag1, tag2"/);
  assert.match(help, /--num-beams <n>/);
  assert.match(help, /--max-new-tokens <n>/);
  assert.match(help, /--block-repeat-ngrams <n>/);

  const root = await tempDir("cap-cli-");
  const model = await writeTinyCaptioner(join(root, "captioner"), colourSpec());
  const data = join(root, "data");
  await pictures(data);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => out.push(s) > 0) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main([
      "--input",
      data,
      "--captioner",
      model,
      "--num-beams",
      "2",
      "--format",
      "txt",
      "--json",
    ]);
  } finally {
    process.stdout.write = write;
  }
  assert.equal(code, 0);
  const report = JSON.parse(out.join(""));
  assert.equal(report.captioner.numBeams, 2);
  assert.equal(await readFile(join(data, "red.txt"), "utf8"), "a red square again");
  assert.equal(await readFile(join(data, "blue.txt"), "utf8"), "a blue square");
});
