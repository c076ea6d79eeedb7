/**
 * Install by URL and the dataset jobs, in headless Chromium (playwright-core, /usr/bin/chromium):
 *  - `pnpm build:extension --out DIR --git` makes a one-commit git repository; `git clone` of it (a local path
 *    works like a URL) into an A1111-shaped host's extensions/lora-studio holds install.py, scripts/*.py,
 *    javascript/*.js, style.css and nothing that touches the WebUI's venv, and the host page mounts the tab
 *    from that clone;
 *  - Auto-label from the Datasets tab (the trainer's test tagger, whose tags are a closed-form function of a
 *    picture's mean colour) shows its progress, writes the captions, keeps a person's caption, and the grid
 *    shows the new captions; a dataset check started there lists its flagged pictures;
 *  - the Train form's ETA from a measured dry-run step (a train-estimate job), and the loader options;
 *  - Pause on a running training shows "pausing after this step" at once, before the job has stopped.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Browser, Page } from "playwright-core";
import { solidPng, writeTinyTagger } from "../../trainer/test/autolabel.helpers.ts";
import type { Service } from "../src/server/serve.ts";
import type { A1111Host } from "./support/a1111-host.ts";
import { ARTIFACTS, chromiumAvailable, openBrowser, until } from "./support/browser.ts";
import { call, type Dirs, makeDirs, startWithHost, waitForJob } from "./support/service.ts";
import {
  CLIP_TOKENIZER,
  makeTrainDataset,
  TINY_DIFFUSERS,
  TINY_SINGLE_MODEL,
  tinyTrainConfig,
} from "./support/train-fixture.ts";

const run = promisify(execFile);
const BUILD_SCRIPT = fileURLToPath(new URL("../src/build-extension.ts", import.meta.url));
const available = chromiumAvailable;
const skip = !available && "no /usr/bin/chromium";

const RED = "red background, long hair, ^_^, simple background";

let dirs: Dirs;
let clone: string;
let host: A1111Host;
let svc: Service;
let browser: Browser;
let page: Page;

async function files(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name === ".git") continue;
    if (e.isDirectory()) out.push(...(await files(join(dir, e.name), `${prefix}${e.name}/`)));
    else out.push(prefix + e.name);
  }
  return out.sort();
}

before(async () => {
  dirs = await makeDirs("ls-browser-jobs-");
  // build the extension as a git repository with the real CLI, then install it the way "Install from URL" does
  const repo = join(dirs.root, "built-extension");
  await run(process.execPath, ["--import", "tsx", BUILD_SCRIPT, "--out", repo, "--git"]);
  clone = join(dirs.root, "webui", "extensions", "lora-studio");
  await run("git", ["clone", "-q", repo, clone]);
  if (!available) return;
  const tagger = await writeTinyTagger(join(dirs.root, "tagger"), 32, "dynamic");
  ({ host, svc } = await startWithHost(
    dirs,
    { taggerDirs: [tagger], clipTokenizerDir: CLIP_TOKENIZER },
    clone,
  ));
  const ds = join(dirs.dataDir, "datasets", "colours");
  await mkdir(ds, { recursive: true });
  await solidPng(join(ds, "red.png"), 40, 40, [255, 0, 0]);
  await solidPng(join(ds, "red2.png"), 30, 30, [250, 5, 5]);
  await solidPng(join(ds, "human.png"), 20, 20, [0, 0, 255]);
  await writeFile(join(ds, "human.txt"), "my own words\n");
  await makeTrainDataset(join(dirs.dataDir, "datasets"), "squares", "sqstyle", 2);
  ({ browser, page } = await openBrowser());
});

after(async () => {
  await browser?.close();
  await svc?.close();
  await host?.close();
});

test("build:extension --git: one commit; the clone holds the extension and nothing for the WebUI's venv", async () => {
  const { stdout: log } = await run("git", ["-C", clone, "log", "--format=%s"]);
  assert.deepEqual(log.trim().split("\n"), ["lora-studio WebUI extension 0.1.0"]);
  const tree = await files(clone);
  assert.deepEqual(tree, [
    "README.md",
    "install.py",
    "javascript/lora-studio.js",
    "scripts/lora_studio.py",
    "style.css",
  ]);
  // nothing installs packages: no requirements file, no pip / launch.run_pip / subprocess in install.py,
  // and the tab script imports only the standard library and what the WebUI provides
  const install = await readFile(join(clone, "install.py"), "utf8");
  assert.doesNotMatch(install, /^\s*(import|from)\s/m);
  assert.doesNotMatch(install, /pip|run_pip|subprocess|launch\./);
  const script = await readFile(join(clone, "scripts", "lora_studio.py"), "utf8");
  const imports = [...script.matchAll(/^(?:import ([\w.]+)|from ([\w.]+) import )/gm)]
    .map((m) => m[1] ?? m[2])
    .sort();
  assert.deepEqual(imports, ["gradio", "html", "modules", "os", "shutil", "subprocess", "urllib.request"]);
  assert.doesNotMatch(script, /pip|run_pip|launch\.|sys\.executable/);
  assert.match(await readFile(join(clone, "README.md"), "utf8"), /Install from URL/);
});

test("the A1111-shaped page mounts the tab from the cloned extension", { skip }, async () => {
  await page.goto(host.url);
  await page.locator("#tabs > .tab-nav > button", { hasText: "LoRA Studio" }).click();
  await page.locator("#tab_lora_studio lora-studio-app .status", { hasText: "service: open" }).waitFor();
  // the page loaded the clone's script and stylesheet (the host serves extensions/lora-studio/ from the clone)
  const served = await (
    await fetch(`${host.url}/file=extensions/lora-studio/javascript/lora-studio.js`)
  ).text();
  assert.equal(served, await readFile(join(clone, "javascript", "lora-studio.js"), "utf8"));
});

test("auto-label from the Datasets tab: progress, captions written, a person's caption kept", {
  skip,
}, async () => {
  await page.locator('lora-studio-app nav button[data-tab="Datasets"]').click();
  const tab = page.locator("ls-datasets-tab");
  await tab.locator('select[aria-label="dataset"]').selectOption("colours");
  await tab.locator('.tile[data-file="red.png"]').waitFor();
  await tab.locator("#al-prefix").fill("mystyle");
  await tab.locator("button.auto-label-btn").click();
  await tab.locator(".status", { hasText: "Auto-label done" }).waitFor({ timeout: 30000 });
  assert.match(
    (await tab.locator(".status").textContent()) ?? "",
    /2 written, 0 replaced, 0 overwritten, 1 kept, 0 failed/,
  );
  const ds = join(dirs.dataDir, "datasets", "colours");
  assert.equal(await readFile(join(ds, "red.txt"), "utf8"), `mystyle, ${RED}`);
  assert.equal(await readFile(join(ds, "red2.txt"), "utf8"), `mystyle, ${RED}`);
  assert.equal(await readFile(join(ds, "human.txt"), "utf8"), "my own words\n");
  // the grid shows the new captions without a reload
  assert.equal(await tab.locator('.tile[data-file="red.png"] textarea').inputValue(), `mystyle, ${RED}`);
  // progress came per picture (batch 1): 0/2, 1/2, 2/2
  const jobs = svc.queue.store.list().filter((j) => j.kind === "auto-label");
  assert.equal(jobs.length, 1);
  const progress = svc.queue.store
    .eventsSince(jobs[0].id, 0)
    .filter((e) => e.type === "progress")
    .map((e) => `${(e.data as { done: number }).done}/${(e.data as { total: number }).total}`);
  assert.deepEqual(progress, ["0/2", "1/2", "2/2"]);
  await page.screenshot({ path: join(ARTIFACTS, "datasets-auto-label.png"), fullPage: true });
});

test("dataset check from the Datasets tab lists the flagged pictures", { skip }, async () => {
  const tab = page.locator("ls-datasets-tab");
  await tab.locator("button", { hasText: "Check dataset" }).click();
  await tab
    .locator(".status", { hasText: "Dataset check done: 3 images flagged" })
    .waitFor({ timeout: 30000 });
  // 20-40 px pictures are below the 512 px training resolution
  for (const f of ["red.png", "red2.png", "human.png"]) {
    await tab.locator(".banner.flags div", { hasText: new RegExp(`^${f.replace(".", "\\.")}:`) }).waitFor();
    // and on the picture's own tile
    await tab.locator(`.tile.flagged[data-file="${f}"] .flag`, { hasText: "under-resolution" }).waitFor();
  }
  await tab.locator("details.sheet summary").click();
  // No named functions inside evaluate: tsx's keepNames would reference a helper the page does not have.
  await tab.locator("details.sheet img").waitFor();
  const sheet = await until("contact sheet decoded", async () => {
    const wh = await tab
      .locator("details.sheet img")
      .evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
    return wh[0] > 0 ? wh : undefined;
  });
  assert.ok(sheet[0] > 0 && sheet[1] > 0, `contact sheet decoded: ${sheet}`);
  await page.screenshot({ path: join(ARTIFACTS, "datasets-check.png"), fullPage: true });
});

test("the Train form's ETA comes from a measured dry-run step; the base model's loader options are there", {
  skip,
}, async () => {
  await page.locator('lora-studio-app nav button[data-tab="Train"]').click();
  const train = page.locator("ls-train-tab");
  await train.locator('input[data-key="lora_rank"]').waitFor();
  await train.locator('select[aria-label="use a dataset"]').selectOption("squares");
  const set = async (key: string, value: string) => {
    await train.locator(`input[data-key="${key}"]`).fill(value);
    await train.locator(`input[data-key="${key}"]`).press("Tab");
  };
  await set("base_model", TINY_DIFFUSERS);
  await set("resolution", "64");
  await set("epochs", "3");
  await train.locator("details summary", { hasText: "Advanced" }).click();
  await train.locator('input[data-key="enable_bucket"]').uncheck();
  // the base model's loader options and clip_skip, folded with the advanced keys
  await train.locator('fieldset.loader input[data-key="clip_skip"]').waitFor();
  await train.locator('select[data-hot="ortOpt"]').selectOption("disabled"); // tiny model: session build dominates
  await train.locator('select[data-loader="prediction_type"] option[value="v_prediction"]').waitFor({
    state: "attached",
  });
  await train.locator(".plan .summary", { hasText: "= 6 steps" }).waitFor({ timeout: 15000 });
  await train.locator(".eta", { hasText: "no measurement yet" }).waitFor();
  await train.locator("button.measure").click();
  await train.locator('.eta[data-source="measured"]').waitFor({ timeout: 120000 });
  const job = svc.queue.store.list().find((j) => j.kind === "train-estimate");
  assert.equal(job?.state, "done");
  const sps = Number((job?.result as { secondsPerStep?: number } | undefined)?.secondsPerStep);
  assert.ok(sps > 0);
  const text = (await train.locator(".eta").textContent()) ?? "";
  assert.match(text, /measured by a dry-run step/);
  // 6 steps at the measured step time, as the form rounds it
  const eta = Math.round(6 * sps);
  assert.ok(text.includes(eta >= 60 ? `${Math.floor(eta / 60)} min` : `ETA ~${eta} s`), text);
  await page.screenshot({ path: join(ARTIFACTS, "train-eta.png"), fullPage: true });
});

test("pause shows 'pausing after this step' at once; cancel stops the training at once", {
  skip,
}, async () => {
  const r = await call(svc, "POST", "/api/jobs", {
    kind: "train",
    params: {
      config: tinyTrainConfig({ train_data_dir: "squares", output_name: "paused", max_train_steps: 400 }),
      model: TINY_SINGLE_MODEL,
      graph_optimization: "disabled",
    },
  });
  assert.equal(r.status, 202, r.body.error);
  const id = r.body.id as string;
  await waitForJob(svc, id, ["running"], 60000);
  await page.locator('lora-studio-app nav button[data-tab="Runs"]').click();
  const runs = page.locator("ls-runs-tab");
  await runs.locator(`li button`, { hasText: "train: paused" }).click();
  await runs.locator(".job-state", { hasText: "running" }).waitFor();
  await runs.locator("button.pause").click();
  // the notice is there while the job is still running its setup / current step
  await runs.locator(".stopping", { hasText: "pausing after this step" }).waitFor({ timeout: 3000 });
  assert.equal(svc.queue.store.get(id)?.state, "running");
  assert.equal(await runs.locator("button.pause").isDisabled(), true);
  await page.screenshot({ path: join(ARTIFACTS, "runs-pausing.png"), fullPage: true });
  await runs.locator("button.cancel").click();
  await runs.locator(".job-state", { hasText: "cancelled" }).waitFor({ timeout: 10000 });
  assert.equal(await runs.locator(".stopping").textContent(), "");
});
