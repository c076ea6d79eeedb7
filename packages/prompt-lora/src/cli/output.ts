/**
 * What every CLI command shares: `--json` output, one-line errors with exit code 1 (never a stack trace,
 * unless LORA_STUDIO_DEBUG is set), the default cache folder, and small text formatters.
 */
import { homedir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";

/** An error whose message is already what the user should read. */
export class CliError extends Error {
  override name = "CliError";
}

export interface CommonOptions {
  json?: boolean;
}

export function addJsonOption(cmd: Command): Command {
  return cmd.option("--json", "print one JSON object on stdout instead of text");
}

/** Prints `value` as JSON (one object, then a newline). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(line = ""): void {
  process.stdout.write(`${line}\n`);
}

/**
 * Wraps a commander action: any error becomes one line (stderr, or `{"error": ...}` on stdout with
 * --json) and exit code 1. The options object is commander's second-to-last action argument.
 */
export function action<A extends unknown[]>(
  run: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const opts = (args.length >= 2 ? args[args.length - 2] : {}) as CommonOptions;
    try {
      await run(...args);
    } catch (err) {
      reportError(err, opts?.json === true);
      process.exitCode = 1;
    }
  };
}

export function reportError(err: unknown, json: boolean): void {
  const message = oneLine(err);
  if (json) printJson({ error: message });
  else process.stderr.write(`error: ${message}\n`);
  if (process.env.LORA_STUDIO_DEBUG && err instanceof Error && err.stack)
    process.stderr.write(`${err.stack}\n`);
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, " ").trim() || (err instanceof Error ? err.name : "unknown error");
}

/** `--cache-dir`, else $LORA_STUDIO_CACHE_DIR, else $XDG_CACHE_HOME/lora-studio, else ~/.cache/lora-studio. */
export function defaultCacheDir(): string {
  if (process.env.LORA_STUDIO_CACHE_DIR) return process.env.LORA_STUDIO_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "lora-studio");
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Numbers in option values ("--rank 32"): a clear error instead of NaN. */
export function parsePositiveInt(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new CliError(`${what} must be a positive integer, got "${value}"`);
  return n;
}

/** Lays out rows as aligned columns (the last column is not padded). */
export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join("  ")
      .trimEnd(),
  );
}
