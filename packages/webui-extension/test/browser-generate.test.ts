/**
 * The standalone page's Generate tab in headless Chromium (Debian's /usr/bin/chromium via playwright-core),
 * on the tiny fixture model: the tab is keyboard-reachable, a Lora chip inserts its token at the caret, typing
 * a prompt and clicking Generate shows step progress and then the image with its infotext, served by the
 * service; the form does not move while the results arrive. Screenshot: test-artifacts/generate.png.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { Service } from "../src/server/serve.ts";
import { ARTIFACTS, chromiumAvailable, openBrowser } from "./support/browser.ts";
import { call, FIXTURES, makeDirs, start } from "./support/service.ts";

const TINY_DIFFUSERS = join(FIXTURES, "tiny-sd1", "diffusers");
const available = chromiumAvailable;

let svc: Service;
let browser: Browser;
let page: Page;

before(async () => {
  if (!available) return;
  const dirs = await makeDirs("ls-browser-gen-");
  svc = await start(dirs, { baseModel: TINY_DIFFUSERS });
  ({ browser, page } = await openBrowser());
});

after(async () => {
  if (!available) return;
  await browser?.close();
  await svc?.close();
});

const inGen = (sel: string) => page.locator(`ls-generate-tab ${sel}`);

test("Generate tab: chip, prompt, progress, image with infotext, no layout jump", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  await page.goto(svc.url);
  await page.locator("lora-studio-app .status", { hasText: "service: open" }).waitFor();
  // keyboard: Generate (standalone only) follows Library; ArrowLeft from Datasets wraps round to it
  await page.locator('lora-studio-app nav button[data-tab="Datasets"]').click();
  await page.keyboard.press("ArrowLeft");
  assert.equal(
    await page.locator('lora-studio-app nav button[data-tab="Generate"]').getAttribute("aria-selected"),
    "true",
  );
  await inGen("#prompt").waitFor();

  // the Lora folder's cards as chips: `tiny` (style/tiny.safetensors) inserts its token at the caret
  await inGen('button.chip[data-token="<lora:tiny:1>"]').waitFor();
  await inGen("#prompt").fill("a lighthouse at dusk");
  await inGen("#prompt").press("End");
  await inGen('button.chip[data-token="<lora:tiny:1>"]').click();
  assert.equal(await inGen("#prompt").inputValue(), "a lighthouse at dusk <lora:tiny:1>");
  await inGen("#prompt").press("End");
  await inGen("#prompt").pressSequentially(", oil painting");
  await inGen("#negative").fill("blurry");
  for (const [key, value] of [
    ["steps", "6"],
    ["width", "64"],
    ["height", "32"],
    ["clip_skip", "2"],
  ]) {
    await inGen(`input[data-key="${key}"]`).fill(value);
    await inGen(`input[data-key="${key}"]`).press("Tab");
  }
  await inGen("#seed").fill("77");
  await inGen("#seed").press("Tab");
  await inGen("#sampler").selectOption("DPM++ 2M Karras");

  // record every progress text the tab shows (the tiny model samples fast); a string, not a function: tsx's
  // keepNames would wrap a function's inner names in a helper the page does not have
  await page.evaluate(`(() => {
    window.__progress = [];
    const root = document.querySelector("lora-studio-app").shadowRoot.querySelector("ls-generate-tab").shadowRoot;
    new MutationObserver(() => {
      const t = (root.querySelector("#progress-text")?.textContent ?? "").trim();
      if (t && window.__progress.at(-1) !== t) window.__progress.push(t);
    }).observe(root, { subtree: true, childList: true, characterData: true });
  })()`);
  const buttonBefore = await inGen("#generate").boundingBox();
  const resultsBefore = await inGen(".results").boundingBox();
  await inGen("#generate").click();
  const img = inGen("figure img");
  await img.waitFor({ timeout: 60000 }).catch(async (e) => {
    await page.screenshot({ path: join(ARTIFACTS, "generate-failed.png"), fullPage: true });
    console.error("jobs:", JSON.stringify(svc.queue.store.list()).slice(0, 3000));
    throw e;
  });
  await page.waitForFunction(() => {
    const app = document.querySelector("lora-studio-app");
    const img = app?.shadowRoot?.querySelector("ls-generate-tab")?.shadowRoot?.querySelector("figure img");
    return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
  });
  const seen = await page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);
  for (let s = 1; s <= 6; s++)
    assert.ok(seen.includes(`step ${s} / 6`), `saw step ${s}: ${seen.join(" | ")}`);
  const natural = await img.evaluate((el) => [
    (el as HTMLImageElement).naturalWidth,
    (el as HTMLImageElement).naturalHeight,
  ]);
  assert.deepEqual(natural, [64, 32]);
  const infotext = await inGen("figure .infotext").textContent();
  assert.equal(
    infotext?.split("\n").slice(0, 2).join("\n"),
    "a lighthouse at dusk <lora:tiny:1>, oil painting\nNegative prompt: blurry",
  );
  assert.match(
    infotext ?? "",
    /Steps: 6, Sampler: DPM\+\+ 2M Karras, CFG scale: 7, Seed: 77, Size: 64x32, .*Clip skip: 2, Lora hashes: "tiny: [0-9a-f]{12}"/,
  );
  // the form and the result area stayed where they were
  assert.deepEqual(await inGen("#generate").boundingBox(), buttonBefore);
  assert.equal((await inGen(".results").boundingBox())?.y, resultsBefore?.y);
  assert.equal(await inGen("#generate").isEnabled(), true);
  await page.screenshot({ path: join(ARTIFACTS, "generate.png"), fullPage: true });

  // inside a WebUI (standalone: false) the host has txt2img: the same app shows no Generate tab
  const tabs = await page.evaluate(`(async () => {
    const app = document.createElement("lora-studio-app");
    app.config = { ...window.__LORA_STUDIO__, standalone: false };
    document.body.append(app);
    await app.updateComplete;
    const names = [...app.shadowRoot.querySelectorAll("nav button[role=tab]")].map((b) => b.dataset.tab);
    app.remove();
    return names;
  })()`);
  assert.deepEqual(tabs, ["Datasets", "Train", "Runs", "Library"]);
});

test("a page opened while a generation runs follows it: progress, then the image", {
  skip: !available && "no /usr/bin/chromium",
}, async () => {
  const started = await call(svc, "POST", "/api/generate", {
    prompt: "a red square",
    steps: 40,
    width: 64,
    height: 64,
    seed: 3,
  });
  assert.equal(started.status, 202, JSON.stringify(started.body));
  const fresh = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    await fresh.goto(svc.url);
    await fresh.locator('lora-studio-app nav button[data-tab="Generate"]').click();
    const text = fresh.locator("ls-generate-tab #progress-text");
    await fresh.waitForFunction(() => {
      const root = document.querySelector("lora-studio-app")?.shadowRoot?.querySelector("ls-generate-tab");
      return /step \d+ \/ 40|running|queued/.test(
        root?.shadowRoot?.querySelector("#progress-text")?.textContent ?? "",
      );
    });
    assert.match((await text.textContent()) ?? "", /step \d+ \/ 40|running|queued/);
    assert.equal(await fresh.locator("ls-generate-tab #generate").isEnabled(), false);
    await fresh.locator("ls-generate-tab figure img").waitFor({ timeout: 60000 });
    assert.match(
      (await fresh.locator("ls-generate-tab figure .infotext").textContent()) ?? "",
      /Seed: 3, Size: 64x64/,
    );
  } finally {
    await fresh.close();
  }
});
