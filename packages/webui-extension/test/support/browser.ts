/**
 * Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core (`.ci/run`
 * installs it; without it the browser tests are skipped, and say so), screenshots under test-artifacts/.
 */
import { access, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
export const chromiumAvailable = await access(CHROMIUM).then(
  () => true,
  () => false,
);
/** For `test(name, { skip: skipWithoutChromium }, ...)`. */
export const skipWithoutChromium = !chromiumAvailable && "no /usr/bin/chromium";

/** A browser (no network services, no first-run UI) and one page whose script errors are printed. */
export async function openBrowser(
  viewport = { width: 1280, height: 900 },
): Promise<{ browser: Browser; page: Page }> {
  await mkdir(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  return { browser, page };
}
