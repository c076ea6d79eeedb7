/**
 * `lora list DIR` and `lora inspect FILE`: the library listing and one file in detail (format, family,
 * modules, ranks, alpha, metadata, hashes). A corrupt file makes `inspect` fail with one line and exit 1;
 * in `list` it is one entry among others, marked with its reason.
 */
import type { Command } from "commander";
import { readAdapter } from "../../adapters/index.ts";
import type { AdapterModule } from "../../adapters/types.ts";
import { describeFile, scanLibrary } from "../../library/scan.ts";
import type { LibraryEntry } from "../../library/types.ts";
import { createProgress } from "../../util/progress.ts";
import {
  action,
  addJsonOption,
  CliError,
  defaultCacheDir,
  formatBytes,
  printJson,
  printLine,
  table,
} from "../output.ts";

interface ListOptions {
  json?: boolean;
  cacheDir?: string;
  cache?: boolean;
}

export function registerLibrary(program: Command): void {
  addJsonOption(
    program
      .command("list")
      .description(
        "list the LoRAs of a folder (recursive): name, alias, family, format, ranks, alpha, hashes",
      )
      .argument("<dir>", "LoRA folder, e.g. models/Lora")
      .option("--cache-dir <dir>", "metadata/hash cache folder")
      .option("--no-cache", "do not read or write the cache"),
  ).action(action(runList));

  addJsonOption(
    program
      .command("inspect")
      .description("describe one adapter file: format, family, modules, ranks, alpha, metadata, hashes")
      .argument("<file>", "a .safetensors file")
      .option("--modules", "list every module (text output; --json always lists them)"),
  ).action(action(runInspect));
}

async function runList(dir: string, opts: ListOptions): Promise<void> {
  const progress = createProgress("listing LoRAs");
  let listing: Awaited<ReturnType<typeof scanLibrary>>;
  try {
    listing = await scanLibrary(dir, {
      cacheDir: opts.cache === false ? undefined : (opts.cacheDir ?? defaultCacheDir()),
      onProgress: (done, total) => progress.update(done, total),
    });
  } catch (err) {
    throw new CliError(
      `${dir}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such folder" : (err as Error).message}`,
    );
  } finally {
    progress.stop();
  }
  if (opts.json) {
    printJson(listing);
    return;
  }
  const rows = [["NAME", "ALIAS", "FAMILY", "FORMAT", "RANK", "ALPHA", "MODULES", "SIZE", "HASH", "FOLDER"]];
  for (const e of listing.entries) {
    rows.push([
      e.name,
      e.alias === e.name ? "" : e.alias,
      e.family,
      e.supported ? (e.format ?? "?") : "-",
      e.ranks.join(","),
      e.alphas.join(","),
      String(e.moduleCount),
      formatBytes(e.size),
      e.shortHash ?? "",
      e.folder,
    ]);
  }
  for (const line of table(rows)) printLine(line);
  for (const e of listing.entries) if (!e.supported) printLine(`! ${e.path}: ${e.reason}`);
  for (const u of listing.unreadable) printLine(`! ${u.path}: ${u.reason}`);
  for (const c of listing.cyclesSkipped) printLine(`! ${c}: symlink cycle, not followed`);
  const s = listing.stats;
  process.stderr.write(`${s.files} files (${s.fromCache} from cache, ${s.analyzed} read)\n`);
}

function moduleRank(m: AdapterModule): number | null {
  const t = m.tensors.down ?? m.tensors.hada_w1_b ?? m.tensors.lokr_w2_b ?? m.tensors.lokr_w1_b;
  return t === undefined ? null : t.shape[0];
}

async function runInspect(file: string, opts: { json?: boolean; modules?: boolean }): Promise<void> {
  let described: Awaited<ReturnType<typeof describeFile>>;
  try {
    described = await describeFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(code === "ENOENT" ? `${file}: no such file` : (err as Error).message);
  }
  const { entry, info } = described;
  if (info.error !== null) throw new CliError(info.error);
  let modules: Array<Record<string, unknown>> = [];
  if (entry.supported) {
    const adapter = await readAdapter(entry.path);
    modules = adapter.modules.map((m) => ({
      component: m.component,
      path: m.path,
      kind: m.kind,
      layer: m.layer,
      rank: moduleRank(m),
      alpha: m.alpha ?? null,
      dora: m.doraScale !== undefined,
    }));
  }
  if (opts.json) {
    printJson({ ...entry, file: entry.path, modules });
    return;
  }
  printText(entry, modules);
  if (opts.modules) {
    const rows = modules.map((m) => [
      String(m.component),
      String(m.path),
      String(m.kind),
      String(m.layer),
      `rank ${m.rank ?? "-"}`,
      `alpha ${m.alpha ?? "-"}`,
    ]);
    for (const line of table(rows)) printLine(`  ${line}`);
  }
}

function printText(e: LibraryEntry, modules: Array<Record<string, unknown>>): void {
  printLine(`file:       ${e.path} (${formatBytes(e.size)})`);
  printLine(`name:       ${e.name}${e.alias !== e.name ? ` (alias ${e.alias})` : ""}`);
  if (!e.supported) printLine(`note:       ${e.reason}`);
  printLine(`format:     ${e.format ?? "-"}${e.kinds.length > 0 ? ` (${e.kinds.join(", ")})` : ""}`);
  printLine(`family:     ${e.family} (from ${e.familySource})`);
  printLine(`modules:    ${e.moduleCount} (${e.components.join(", ") || "-"})`);
  printLine(`ranks:      ${e.ranks.join(", ") || "-"}`);
  printLine(`alpha:      ${e.alphas.join(", ") || "-"}`);
  if (e.unknownKeyCount > 0)
    printLine(`unknown:    ${e.unknownKeyCount} keys, e.g. ${e.unknownKeysSample.slice(0, 2).join(", ")}`);
  if (e.hashes) {
    printLine(`sha256:     ${e.hashes.sha256} (AutoV2 ${e.hashes.autoV2})`);
    if (e.hashes.addnet) printLine(`addnet:     ${e.hashes.addnet} (AutoV3 ${e.hashes.addnetShort})`);
  }
  printLine(`a1111 hash: ${e.shortHash ?? "-"}`);
  if (e.preview) printLine(`preview:    ${e.preview}`);
  if (e.userMetadata) {
    const u = e.userMetadata;
    for (const [k, v] of Object.entries({
      description: u.description,
      "activation text": u.activationText,
      "preferred weight": u.preferredWeight,
      "negative text": u.negativeText,
      "sd version": u.sdVersion,
      notes: u.notes,
    })) {
      if (v !== undefined && v !== "") printLine(`${`${k}:`.padEnd(12)}${v}`);
    }
  }
  const keys = Object.keys(e.metadata);
  if (keys.length > 0) {
    printLine("metadata:");
    for (const k of keys) {
      const v = e.metadata[k];
      const text = typeof v === "string" ? v : JSON.stringify(v);
      printLine(`  ${k}: ${text.length > 120 ? `${text.slice(0, 117)}...` : text}`);
    }
  }
  if (modules.length > 0) {
    const counts = new Map<string, number>();
    for (const m of modules)
      counts.set(
        `${m.component} ${m.kind} ${m.layer}`,
        (counts.get(`${m.component} ${m.kind} ${m.layer}`) ?? 0) + 1,
      );
    printLine("module kinds:");
    for (const [k, n] of counts) printLine(`  ${k}: ${n}`);
  }
}
