/**
 * Atomic file replacement: write to a temporary file in the destination's folder, fsync it, rename it over the
 * destination, fsync the folder. A crash or a full disk leaves either the old file or the new one under the
 * final name, never a half-written one; on error the temporary file is removed.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** A hidden sibling of `path`, unique per process and call (same folder, so rename never crosses devices). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
}

/**
 * Runs `write(tmpPath)`, which must create the file at tmpPath, then makes it durable and renames it to `path`.
 * Until the rename, an existing file at `path` is untouched.
 */
export async function withAtomicPath<R>(path: string, write: (tmpPath: string) => Promise<R>): Promise<R> {
  const tmpPath = tempPathFor(path);
  try {
    const result = await write(tmpPath);
    await fsyncPath(tmpPath, "r+");
    await rename(tmpPath, path);
    await fsyncDirectory(dirname(path));
    return result;
  } catch (err) {
    await rm(tmpPath, { force: true }).catch(() => {});
    throw err;
  }
}

export async function atomicWriteFile(path: string, data: string | Uint8Array): Promise<void> {
  await withAtomicPath(path, async (tmpPath) => {
    const handle = await open(tmpPath, "wx");
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
  });
}

async function fsyncPath(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes the rename itself durable; not every platform can open a folder, so failures are ignored. */
async function fsyncDirectory(dir: string): Promise<void> {
  try {
    await fsyncPath(dir, "r");
  } catch {
    // best effort (e.g. Windows)
  }
}
