/**
 * A real training run started from the Train tab in headless Chromium (the A1111-shaped page, the tiny
 * fixture model): the Runs tab opens on it, the loss chart, the numbers and the sample grid fill from the
 * job's events without moving the layout, the health advice shows at the end, and the LoRA lands in the
 * host's Lora list. Screenshots: test-artifacts/train-form.png, runs-training.png, runs-trained.png.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { listWebuiLoras } from "../src/bridge/webui.ts";
import type { Service } from "../src/server/serve.ts";
import type { A1111Host } from "./support/a1111-host.ts";
import { ARTIFACTS, chromiumAvailable, openBrowser } from "./support/browser.ts";
import { type Dirs, makeDirs, startWithHost } from "./support/service.ts";
import { makeTrainDataset, TINY_DIFFUSERS } from "./support/train-fixture.ts";

const available = chromiumAvailable;

let dirs: Dirs;
let host: A1111Host;
let svc: Service;
let browser: Browser;
let page: Page;

before(async () => {
  if (!available) return;
  dirs = await makeDirs("ls-browser-train-");
  ({ host, svc } = await startWithHost(dirs));
  await makeTrainDataset(join(dirs.dataDir, "datasets"), "squares", "sqstyle", 3);
  ({ browser, page } = await openBrowser({ width: 1280, height: 1000 }));
});

after(async () => {
  if (!available) return;
  await browser?.close();
  await svc?.close();
  await host?.close();
});

const inTrain = (sel: string, options?: { hasText: string }) => page.locator(`ls-train-tab ${sel}`, options);

async function setField(key: string, value: string): Promise<void> {
  await inTrain(`input[data-key="${key}"]`).fill(value);
  await inTrain(`input[data-key="${key}"]`).press("Tab");
}

test("a training started from the Train tab streams into the Runs chart and its LoRA reaches the host", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await page.goto(host.url);
  await page.locator("#tabs > .tab-nav > button", { hasText: "LoRA Studio" }).click();
  await page.locator("lora-studio-app .status", { hasText: "service: open" }).waitFor();
  await page.locator('lora-studio-app nav button[data-tab="Train"]').click();
  await inTrain('input[data-key="lora_rank"]').waitFor();

  // the "style" preset, then the tiny model's settings: 3 pictures x 4 epochs = 12 steps, a save at 6
  await inTrain('button[data-preset="style"]').click();
  await inTrain('select[aria-label="use a dataset"]').selectOption("squares");
  await setField("base_model", TINY_DIFFUSERS);
  await setField("output_name", "ui_style");
  for (const [k, v] of Object.entries({
    lora_rank: "4",
    lora_alpha: "4",
    learning_rate: "0.001",
    epochs: "4",
    repeats: "1",
    resolution: "64",
    save_steps: "6",
  }))
    await setField(k, v);
  await inTrain("details summary").click();
  await inTrain('input[data-key="enable_bucket"]').uncheck();
  await setField("sample_prompts", '["sqstyle, square --s 2 --d 3"]');
  await setField("sample_every_n_steps", "6");
  await inTrain('select[data-hot="ortOpt"]').selectOption("disabled");
  await inTrain(".plan .summary", { hasText: "= 12 steps" }).waitFor({ timeout: 15000 });
  await inTrain(".plan .summary", { hasText: 'activation text "sqstyle"' }).waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "train-form.png"), fullPage: true });
  await inTrain("button.primary", { hasText: "Start training" }).click();

  // the Runs tab opens on the new job and fills from its events
  const runs = page.locator("ls-runs-tab");
  await runs.locator(".job-state", { hasText: "running" }).waitFor({ timeout: 15000 });
  const raw = runs.locator("ls-line-chart.loss-chart polyline.raw");
  await raw.waitFor({ timeout: 60000 });
  const boxes = async () =>
    Promise.all(
      ["ls-line-chart.loss-chart", ".samples", ".health", ".log"].map((s) => runs.locator(s).boundingBox()),
    );
  const early = await boxes();
  await runs.locator(".samples figure").first().waitFor({ timeout: 60000 });
  await page.screenshot({ path: join(ARTIFACTS, "runs-training.png"), fullPage: true });
  await runs.locator(".job-state", { hasText: "done" }).waitFor({ timeout: 90000 });
  await runs.locator(".health h4", { hasText: "Training health (done)" }).waitFor();
  // nothing moved while steps, samples, saves and the health note streamed in
  assert.deepEqual(await boxes(), early);

  // the chart is the job's metric events: one point per step, the moving average drawn over them
  const jobId = (await runs.locator(".head code").textContent()) ?? "";
  const metrics = svc.queue.store.eventsSince(jobId, 0).filter((e) => e.type === "metric");
  assert.equal(metrics.length, 12);
  assert.equal(((await raw.getAttribute("points")) ?? "").trim().split(" ").length, 12);
  assert.equal(await runs.locator("ls-line-chart.loss-chart polyline.avg").count(), 1);
  assert.equal(await runs.locator(".stat b").first().textContent(), "12/12");
  assert.equal(await runs.locator(".samples figure").count(), 3); // before training, step 6, step 12
  await runs.locator(".samples figure figcaption", { hasText: "ui_style.safetensors" }).waitFor();
  await runs.locator(".log", { hasText: "in the Lora folder: lora-studio/ui_style.safetensors" }).waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "runs-trained.png"), fullPage: true });

  const listed = await listWebuiLoras(host.url);
  const card = listed.find((l) => l.name === "ui_style");
  assert.ok(card, JSON.stringify(listed.map((l) => l.name)));
  assert.equal(card.path, join(dirs.loraDir, "lora-studio", "ui_style.safetensors"));
});
