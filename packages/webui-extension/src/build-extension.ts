/**
 * `pnpm build:extension`: builds the WebUI extension folder into dist/webui-extension/:
 *   javascript/lora-studio.js   the lit UI bundled by esbuild (IIFE, no runtime dependencies; the WebUI
 *                               loads every javascript/*.js of an extension as a classic script)
 *   style.css                   loaded by the WebUI from the extension root
 *   scripts/lora_studio.py      registers the empty tab (on_ui_tabs) and starts the service if asked
 *   install.py                  does nothing to the WebUI's venv
 * The same bundle is what the service serves at /ui/lora-studio.js in standalone mode.
 */
import { cp, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url));
export const UI_ENTRY = join(PACKAGE_DIR, "ui", "main.ts");
export const EXTENSION_SOURCES = join(PACKAGE_DIR, "extension");
export const DEFAULT_OUT = fileURLToPath(new URL("../../../dist/webui-extension/", import.meta.url));

/** The UI bundle as text (esbuild is a dev dependency: loaded only when a bundle is built). */
export async function bundleUi(minify = true): Promise<string> {
  const esbuild = await import("esbuild");
  const r = await esbuild.build({
    entryPoints: [UI_ENTRY],
    bundle: true,
    write: false,
    format: "iife",
    target: "es2022",
    minify,
    legalComments: "eof",
    logLevel: "silent",
  });
  return r.outputFiles[0].text;
}

export async function buildExtension(outDir = DEFAULT_OUT): Promise<string> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(join(outDir, "javascript"), { recursive: true });
  await cp(EXTENSION_SOURCES, outDir, { recursive: true });
  await writeFile(join(outDir, "javascript", "lora-studio.js"), await bundleUi());
  return outDir;
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const out = await buildExtension(process.argv[2] ?? DEFAULT_OUT);
  console.log(`built ${out}`);
}
