/**
 * Every path a client sends names something inside one root folder (the Lora folder, a dataset folder).
 * This module is the single gate: it refuses NUL bytes, absolute paths, `..` segments, backslashes, over-long
 * names, and (after resolving symlinks with realpath) anything whose real location is outside the root's
 * real location. Refusals are `PathError`s, which the HTTP layer answers with 400 and the message.
 */
import { lstat, realpath } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

/** Linux NAME_MAX is 255 bytes; Windows MAX_PATH-ish limit for the whole relative path. */
export const MAX_NAME_BYTES = 255;
export const MAX_RELATIVE_PATH_BYTES = 1024;

export class PathError extends Error {
  readonly status = 400;
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(
      `refused path ${JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}...` : input)}: ${reason}`,
    );
    this.name = "PathError";
  }
}

/** Checks the text of a relative path (no file system access). Returns its `/`-separated segments. */
export function checkRelativeText(input: unknown, what = "path"): string[] {
  if (typeof input !== "string") throw new PathError(String(input), `${what} must be a string`);
  if (input.includes("\0")) throw new PathError(input, "contains a NUL byte");
  if (input.includes("\\")) throw new PathError(input, "contains a backslash; use / between folders");
  if (isAbsolute(input) || /^[a-zA-Z]:/.test(input))
    throw new PathError(input, "absolute paths are not allowed");
  if (Buffer.byteLength(input) > MAX_RELATIVE_PATH_BYTES) {
    throw new PathError(input, `longer than ${MAX_RELATIVE_PATH_BYTES} bytes`);
  }
  const segments = input.split("/").filter((s) => s !== "" && s !== ".");
  for (const s of segments) {
    if (s === "..") throw new PathError(input, "'..' segments are not allowed");
    if (Buffer.byteLength(s) > MAX_NAME_BYTES)
      throw new PathError(input, `a name is longer than ${MAX_NAME_BYTES} bytes`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
    if (/[\u0000-\u001f]/.test(s)) throw new PathError(input, "contains a control character");
  }
  return segments;
}

/** A single file or folder name (no `/`). */
export function checkName(input: unknown, what = "name"): string {
  const segments = checkRelativeText(input, what);
  if (segments.length !== 1 || (input as string).includes("/")) {
    throw new PathError(String(input), `${what} must be a single name without '/'`);
  }
  return segments[0];
}

function isInside(child: string, root: string): boolean {
  return child === root || child.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Resolves `rel` inside `root` and proves it stays there: the deepest existing ancestor (or the path itself)
 * is realpath'd, so a symlink anywhere on the way that points out of the root is caught. The returned path
 * is `realRoot + rel` (the name as the user sees it, not the symlink target).
 */
export async function resolveInside(root: string, rel: unknown, what = "path"): Promise<string> {
  const segments = checkRelativeText(rel, what);
  const realRoot = await realpath(resolve(root));
  const target = join(realRoot, ...segments);
  let probe = target;
  for (;;) {
    try {
      await lstat(probe);
      break;
    } catch {
      const up = dirname(probe);
      if (up === probe) break;
      probe = up;
    }
  }
  const real = await realpath(probe).catch(() => probe);
  if (!isInside(real, realRoot)) {
    throw new PathError(String(rel), `resolves outside the folder (through a symlink to ${real})`);
  }
  if (!isInside(target, realRoot)) throw new PathError(String(rel), "resolves outside the folder");
  return target;
}

/** `abs` relative to `root` with `/` separators (for answers to clients). */
export function toRelative(root: string, abs: string): string {
  return relative(root, abs).split(sep).join("/");
}
