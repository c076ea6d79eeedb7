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

/** Polls `f` every 100 ms until it yields something other than undefined/false (errors count as not yet). */
export async function until<T>(
  what: string,
  f: () => Promise<T | undefined | false>,
  timeoutMs = 20000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
