/** File helpers of the bake: existence, recursive listing, and an atomically built output folder. */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { MergeError } from "./errors.ts";

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Every file under `dir`, relative, sorted (symlinks followed). */
export async function listFiles(dir: string, sub = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, sub), { withFileTypes: true })) {
    const rel = sub ? `${sub}/${entry.name}` : entry.name;
    const st = await stat(join(dir, rel));
    if (st.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

/** Builds a folder under a temporary sibling name, then renames it into place (replacing only with overwrite). */
export async function atomicFolder(
  path: string,
  overwrite: boolean,
  build: (tmp: string) => Promise<void>,
): Promise<void> {
  const tag = `${process.pid}-${randomBytes(6).toString("hex")}`;
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${tag}`);
  const present = await exists(path);
  if (present && !overwrite) {
    throw new MergeError("OUTPUT_EXISTS", "output exists (pass overwrite to replace it)", undefined, path);
  }
  try {
    await mkdir(tmp, { recursive: false });
    await build(tmp);
    if (present) {
      const old = join(dirname(path), `.${basename(path)}.old-${tag}`);
      await rename(path, old);
      await rename(tmp, path);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, path);
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}
