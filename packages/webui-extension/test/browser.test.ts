/**
 * The UI in headless Chromium (Debian's /usr/bin/chromium via playwright-core) inside the A1111-shaped page:
 * the tab mounts, a caption edit and a Library rename reach the disk, a merge started from the UI streams
 * into the Runs chart and lands in the host's Lora list, and each tab is saved as a screenshot in
 * test-artifacts/.
 */
import assert from "node:assert/strict";
import { access, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import type { Browser, Page } from "playwright-core";
import { listWebuiLoras } from "../src/bridge/webui.ts";
import type { Service } from "../src/server/serve.ts";
import type { A1111Host } from "./support/a1111-host.ts";
import { ARTIFACTS, chromiumAvailable, openBrowser, until } from "./support/browser.ts";
import { call, type Dirs, makeDirs, startWithHost } from "./support/service.ts";
import { sharp } from "./support/sharp.ts";

const available = chromiumAvailable;

let dirs: Dirs;
let host: A1111Host;
let svc: Service;
let browser: Browser;
let page: Page;

before(async () => {
  if (!available) return;
  dirs = await makeDirs();
  ({ host, svc } = await startWithHost(dirs));
  await call(svc, "POST", "/api/datasets", { name: "faces" });
  const img = await sharp({
    create: { width: 96, height: 64, channels: 3, background: { r: 40, g: 120, b: 200 } },
  })
    .png()
    .toBuffer();
  await writeFile(join(dirs.dataDir, "datasets", "faces", "face1.png"), img);
  await writeLoraWithTrainingMetadata(join(dirs.loraDir, "ink.safetensors"));
  ({ browser, page } = await openBrowser());
});

/** The fixture LoRA's tensors with the metadata a kohya-style trainer writes (tags, steps, dim/alpha). */
async function writeLoraWithTrainingMetadata(path: string): Promise<void> {
  const src = await openSafetensors(join(dirs.loraDir, "tiny-b.safetensors"));
  await writeSafetensors(
    path,
    [...src.tensors.values()].map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      data: () => src.readRaw(t.name),
    })),
    {
      ss_output_name: "ink",
      ss_network_dim: "4",
      ss_network_alpha: "4.0",
      ss_steps: "600",
      ss_tag_frequency: JSON.stringify({ "10_ink": { inkwash: 12, " mountain": 5, moon: 2 } }),
    },
  );
  await src.close();
}

after(async () => {
  if (!available) return;
  await browser?.close();
  await svc?.close();
  await host?.close();
});

const studioTab = (name: string) => page.locator(`lora-studio-app nav button[data-tab="${name}"]`);

test("the tab mounts in the A1111-shaped page and connects to the service", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await page.goto(host.url);
  await page.locator("#tabs > .tab-nav > button", { hasText: "LoRA Studio" }).click();
  await page.locator("#tab_lora_studio lora-studio-app").waitFor();
  await page.locator("lora-studio-app .status", { hasText: "service: open" }).waitFor();
  await page.locator('ls-library-tab .card[data-path="tiny-b.safetensors"]').waitFor();
  assert.equal(await page.locator("lora-studio-app").getAttribute("theme"), "light");
  await page.screenshot({ path: join(ARTIFACTS, "library.png"), fullPage: true });
  // the WebUI switches to dark: the UI follows
  await page.evaluate(() => document.body.classList.add("dark"));
  await until(
    "dark theme",
    async () => (await page.locator("lora-studio-app").getAttribute("theme")) === "dark",
  );
  await page.screenshot({ path: join(ARTIFACTS, "library-dark.png"), fullPage: true });
  await page.evaluate(() => document.body.classList.remove("dark"));
});

test("a LoRA renamed in the Library is renamed on disk", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  const card = page.locator('ls-library-tab .card[data-path="tiny-b.safetensors"]');
  await card.locator("input.rename").fill("renamed-in-ui");
  await card.locator("button.rename-btn").click();
  await until("renamed on disk", async () =>
    (await readdir(dirs.loraDir)).includes("renamed-in-ui.safetensors"),
  );
  assert.ok(!(await readdir(dirs.loraDir)).includes("tiny-b.safetensors"));
  await page.locator('ls-library-tab .card[data-path="renamed-in-ui.safetensors"]').waitFor();
});

test("a caption edited in the Datasets grid is saved to disk", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await studioTab("Datasets").click();
  const tile = page.locator('ls-datasets-tab .tile[data-file="face1.png"]');
  await tile.waitFor();
  // The grid shows the service's WebP thumbnail, decoded by the browser at the picture's own size (96x64).
  const size = await until("thumbnail decoded", async () => {
    const [src, w, h] = await tile
      .locator("img")
      .evaluate((img: HTMLImageElement) => [img.currentSrc, img.naturalWidth, img.naturalHeight]);
    return w > 0 ? { src, w, h } : undefined;
  });
  assert.match(String(size.src), /\?thumb=256$/);
  assert.deepEqual([size.w, size.h], [96, 64]);
  await tile.locator("textarea").fill("a face, blue background");
  await tile.locator("textarea").press("Tab");
  const text = await until("caption file", () =>
    readFile(join(dirs.dataDir, "datasets", "faces", "face1.txt"), "utf8"),
  );
  assert.equal(text, "a face, blue background\n");
  await page.locator("ls-datasets-tab .status", { hasText: "Saved caption of face1.png" }).waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "datasets.png"), fullPage: true });
});

test("the Train tab shows the trainer's config form, validates it and plans it live", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await studioTab("Train").click();
  await page.locator('ls-train-tab input[data-key="lora_rank"]').waitFor();
  assert.equal(await page.locator('ls-train-tab input[data-key="lora_rank"]').inputValue(), "8");
  assert.equal(await page.locator("ls-train-tab .engine-missing").count(), 0);
  await page.locator('ls-train-tab select[aria-label="use a dataset"]').selectOption("faces");
  assert.equal(
    await page.locator('ls-train-tab input[data-key="train_data_dir"]').inputValue(),
    join(dirs.dataDir, "datasets", "faces"),
  );
  await page.locator('ls-train-tab input[data-key="base_model"]').fill("/models/tiny.safetensors");
  await page.locator("ls-train-tab button", { hasText: "Validate" }).click();
  await page.locator("ls-train-tab pre.result", { hasText: "valid" }).waitFor();
  // the live plan follows the form: 1 image x 1 repeat / batch 1 x 10 epochs, then x 3 repeats
  await page.locator("ls-train-tab .plan .summary", { hasText: "= 10 steps" }).waitFor();
  await page.locator('ls-train-tab input[data-key="repeats"]').fill("3");
  await page.locator('ls-train-tab input[data-key="repeats"]').press("Tab");
  await page.locator("ls-train-tab .plan .summary", { hasText: "= 30 steps" }).waitFor();
  // the trainer's dry-run plan of the chosen dataset, in full
  await page.locator("ls-train-tab button", { hasText: "Plan" }).click();
  await page.locator("ls-train-tab pre.result", { hasText: "images: 1 used" }).waitFor();
  assert.match((await page.locator("ls-train-tab pre.result").textContent()) ?? "", /= 30 steps/);
  await page.screenshot({ path: join(ARTIFACTS, "train.png"), fullPage: true });
});

test("a merge started from the Library streams into the Runs chart and appears in the host's Lora list", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await studioTab("Library").click();
  const card = page.locator('ls-library-tab .card[data-path="style/tiny.safetensors"]');
  await card.locator('input[type="checkbox"]').check();
  const button = page.locator("ls-library-tab #merge-btn");
  assert.equal(await button.textContent(), "Convert", "one LoRA and no rank: a format/dtype conversion");
  await page.locator("ls-library-tab #merge-out").fill("from-ui");
  await page.locator("ls-library-tab #merge-rank").fill("2");
  assert.equal(await button.textContent(), "Resize");
  await button.click();
  await page.locator("ls-library-tab .message", { hasText: "Resize job queued: from-ui" }).waitFor();
  await studioTab("Runs").click();
  await page.locator("ls-runs-tab .job-state", { hasText: "done" }).waitFor({ timeout: 30000 });
  const points = await page.locator("ls-runs-tab ls-line-chart polyline.raw").getAttribute("points");
  assert.ok((points ?? "").split(" ").length >= 3, `chart points: ${points}`);
  await page.locator("ls-runs-tab .log", { hasText: "WebUI refreshed its LoRAs" }).waitFor();
  await page.screenshot({ path: join(ARTIFACTS, "runs.png"), fullPage: true });
  const loras = await listWebuiLoras(host.url);
  assert.ok(loras.some((l) => l.name === "from-ui"));
  await studioTab("Library").click();
  await page.locator('ls-library-tab .card[data-path="from-ui.safetensors"]').waitFor();
});

test("standalone: the service's own page embeds the token for a loopback visit and mounts the same UI", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  const standalone = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await standalone.emulateMedia({ colorScheme: "dark" });
  await standalone.goto(svc.url);
  await standalone.locator("lora-studio-app .status", { hasText: "service: open" }).waitFor();
  assert.equal(await standalone.locator("lora-studio-app").getAttribute("theme"), "dark");
  await standalone.locator('ls-library-tab .card[data-path="from-ui.safetensors"]').waitFor();
  await standalone.screenshot({ path: join(ARTIFACTS, "standalone-dark.png"), fullPage: true });
  await standalone.close();
});

test("the Library finds a LoRA by a dataset tag, shows its training facts, and moves it to a subfolder", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await studioTab("Library").click();
  const search = page.locator("ls-library-tab #library-search");
  await search.fill("mountain");
  await page.locator("ls-library-tab #library-count", { hasText: /^1 of \d+$/ }).waitFor();
  const card = page.locator('ls-library-tab .card[data-path="ink.safetensors"]');
  await card.waitFor();
  await card.locator("button.details-btn").click();
  const facts = (await card.locator("dl.facts").textContent()) ?? "";
  assert.match(facts, /steps\s*600/);
  assert.match(facts, /dim \/ alpha\s*4 \/ 4\.0/);
  const tags = await card.locator("button.tag").allTextContents();
  assert.deepEqual(tags, ["inkwash12", "mountain5", "moon2"], "most frequent first, spaces trimmed");
  await page.screenshot({ path: join(ARTIFACTS, "library-details.png"), fullPage: true });

  await search.fill("");
  await card.locator("button.tag", { hasText: "moon" }).click();
  assert.equal(await search.inputValue(), "moon", "a tag click searches for it");
  await page.locator("ls-library-tab #library-count", { hasText: /^1 of \d+$/ }).waitFor();

  await card.locator("input.move").fill("styles");
  await card.locator("button.move-btn").click();
  await until("moved on disk", () =>
    access(join(dirs.loraDir, "styles", "ink.safetensors")).then(() => true),
  );
  await page.locator('ls-library-tab .card[data-path="styles/ink.safetensors"]').waitFor();
  await search.fill("");
});
