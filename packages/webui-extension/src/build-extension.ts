/**
 * `pnpm build:extension`: builds the WebUI extension folder into dist/webui-extension/:
 *   javascript/lora-studio.js   the lit UI bundled by esbuild (IIFE, no runtime dependencies; the WebUI
 *                               loads every javascript/*.js of an extension as a classic script)
 *   style.css                   loaded by the WebUI from the extension root
 *   scripts/lora_studio.py      registers the empty tab (on_ui_tabs) and starts the service if asked
 *   install.py                  does nothing to the WebUI's venv
 *   README.md                   for WebUI users: install by URL, start the service
 * The same bundle is what the service serves at /ui/lora-studio.js in standalone mode.
 *
 * `pnpm build:extension [--out DIR] [--git]`: with --git the folder is also made a git repository holding the
 * built extension at its root in one commit, so it can be pushed to any git host and installed with the
 * WebUI's "Install from URL" (which runs `git clone <url> extensions/<name>`). git is run as a command (it is
 * what the WebUI uses too); the commit gets a fixed author so no git identity needs to be configured.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

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

const git = (cwd: string, args: string[]) =>
  new Promise<void>((resolve, reject) =>
    execFile("git", args, { cwd }, (err, _stdout, stderr) =>
      err ? reject(new Error(`git ${args.join(" ")}: ${stderr || err.message}`)) : resolve(),
    ),
  );

/** Makes `dir` a git repository whose one commit is everything in it. */
export async function commitExtension(dir: string): Promise<void> {
  const { version } = JSON.parse(await readFile(join(PACKAGE_DIR, "package.json"), "utf8")) as {
    version: string;
  };
  await git(dir, ["init", "-q"]);
  await git(dir, ["symbolic-ref", "HEAD", "refs/heads/main"]);
  await git(dir, ["add", "-A"]);
  await git(dir, [
    "-c",
    "user.name=lora-studio build",
    "-c",
    "user.email=build@lora-studio.invalid",
    "-c",
    "commit.gpgsign=false",
    "commit",
    "-q",
    "-m",
    `lora-studio WebUI extension ${version}`,
  ]);
}

export async function buildExtension(outDir = DEFAULT_OUT, options: { git?: boolean } = {}): Promise<string> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(join(outDir, "javascript"), { recursive: true });
  await cp(EXTENSION_SOURCES, outDir, { recursive: true });
  await writeFile(join(outDir, "javascript", "lora-studio.js"), await bundleUi());
  if (options.git === true) await commitExtension(outDir);
  return outDir;
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const { values, positionals } = parseArgs({
    options: { out: { type: "string" }, git: { type: "boolean" } },
    allowPositionals: true,
  });
  const out = resolve(values.out ?? positionals[0] ?? DEFAULT_OUT);
  await buildExtension(out, { git: values.git === true });
  console.log(`built ${out}${values.git ? " (a git repository: push it, then Install from URL)" : ""}`);
}
