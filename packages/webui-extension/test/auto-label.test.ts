/**
 * The auto-label job kind against the real service: refused at submit without a tagger or with an unknown one;
 * with a metadata.csv the captions go to its rows (the place the caption editor writes), and `overwrite: true`
 * replaces a person's caption. Expected captions come from the trainer's test tagger, whose tags are a
 * closed-form function of each picture's mean colour (red -> RED below).
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { solidPng, writeTinyTagger } from "../../trainer/test/autolabel.helpers.ts";
import { call, makeDirs, start, waitForJob } from "./support/service.ts";

const RED = "red background, long hair, ^_^, simple background";

test("auto-label: 400 without a tagger; metadata.csv rows written; overwrite replaces a person's caption", async () => {
  const dirs = await makeDirs("ls-auto-label-");
  const tagger = await writeTinyTagger(join(dirs.root, "wd-tiny"), 32, "dynamic");
  const bare = await start({ ...dirs, dataDir: join(dirs.root, "bare-data") });
  try {
    await mkdir(join(dirs.root, "bare-data", "datasets", "d"), { recursive: true });
    const r = await call(bare, "POST", "/api/datasets/d/auto-label", {});
    assert.equal(r.status, 400);
    assert.match(String(r.body.error), /no tagger model: start the service with --tagger DIR/);
  } finally {
    await bare.close();
  }
  const svc = await start(dirs, { taggerDirs: [tagger] });
  try {
    const ds = join(dirs.dataDir, "datasets", "csv");
    await mkdir(ds, { recursive: true });
    await solidPng(join(ds, "a.png"), 24, 24, [255, 0, 0]);
    await solidPng(join(ds, "b.png"), 24, 24, [250, 5, 5]);
    await writeFile(join(ds, "metadata.csv"), "filename,prompt\nb.png,a person wrote this\n");
    const unknown = await call(svc, "POST", "/api/datasets/csv/auto-label", { model: "wd-other" });
    assert.equal(unknown.status, 400);
    assert.match(String(unknown.body.error), /wd-other is not one of this service's taggers \(wd-tiny\)/);

    const first = await call(svc, "POST", "/api/datasets/csv/auto-label", { model: "wd-tiny" });
    assert.equal(first.status, 202, first.body.error);
    const done = await waitForJob(svc, first.body.id as string, ["done", "failed"], 60000);
    assert.equal(done.state, "done", String(done.error));
    let images = (await call(svc, "GET", "/api/datasets/csv/images")).body.images as Array<{
      file: string;
      caption: string;
      captionSource: string;
    }>;
    assert.deepEqual(
      images.map((i) => [i.file, i.caption, i.captionSource]),
      [
        ["a.png", RED, "metadata.csv"],
        ["b.png", "a person wrote this", "metadata.csv"],
      ],
    );

    const second = await call(svc, "POST", "/api/datasets/csv/auto-label", { overwrite: true, suffix: "x" });
    const again = await waitForJob(svc, second.body.id as string, ["done", "failed"], 60000);
    assert.equal(again.state, "done", String(again.error));
    assert.deepEqual((again.result as { counts: Record<string, number> }).counts, {
      written: 0,
      replaced: 1,
      overwritten: 1,
      kept: 0,
      unchanged: 0,
      failed: 0,
    });
    images = (await call(svc, "GET", "/api/datasets/csv/images")).body.images as typeof images;
    assert.deepEqual(
      images.map((i) => i.caption),
      [`${RED}, x`, `${RED}, x`],
    );
  } finally {
    await svc.close();
  }
});
