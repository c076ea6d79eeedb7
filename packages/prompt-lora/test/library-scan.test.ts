// Library listing on a temporary models/Lora folder built from the fixture LoRA: walk rules, A1111
// hashes (checked against SHA-256 of the raw bytes computed here), metadata, sidecars, previews, cache.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { scanLibrary } from "../src/library/scan.ts";
import type { LibraryEntry } from "../src/library/types.ts";
import { parsePrompt } from "../src/prompt/parse.ts";
import { resolveNetworks } from "../src/prompt/resolve.ts";
import { readSafetensors, writeSafetensors } from "../src/safetensors/index.ts";

const fixtures = new URL("../../../../shared/fixtures/", import.meta.url).pathname;
const fixtureLora = join(fixtures, "tiny-sd1/lora/tiny-sd1-lora-kohya.safetensors");

let tmp: string;
let root: string;

/** Writes the fixture LoRA's tensors under `path` with the given metadata. */
async function writeLora(path: string, metadata: Record<string, string>): Promise<void> {
  const { tensors } = await readSafetensors(fixtureLora);
  const list = [...tensors].map(([name, t]) => ({
    name,
    dtype: "F32" as const,
    shape: t.shape,
    data: t.data,
  }));
  await writeSafetensors(path, list, metadata);
}

/** SHA-256 of the whole file and of the bytes after its 8 + N byte header, straight from the bytes. */
function referenceHashes(path: string): { sha256: string; addnet: string } {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  return {
    sha256: createHash("sha256").update(bytes).digest("hex"),
    addnet: createHash("sha256")
      .update(bytes.subarray(8 + n))
      .digest("hex"),
  };
}

const byName = (entries: LibraryEntry[], name: string) => entries.filter((e) => e.name === name);

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), "lora-lib-"));
  root = join(tmp, "Lora");
  await mkdir(join(root, "sub", "deeper"), { recursive: true });
  await mkdir(join(tmp, "elsewhere"));
  await copyFile(fixtureLora, join(root, "ink.safetensors"));
  await writeFile(
    join(root, "ink.json"),
    JSON.stringify({
      description: "ink lines",
      notes: "n",
      "sd version": "SD1",
      "activation text": "inkstyle",
      "preferred weight": 0.7,
      "negative text": "blurry",
      extra: 1,
    }),
  );
  await writeFile(join(root, "ink.preview.webp"), "img");
  await writeLora(join(root, "sub", "deeper", "pastel.safetensors"), {
    ss_output_name: "pastel-style",
    ss_base_model_version: "sdxl_base_v1-0",
    ss_tag_frequency: JSON.stringify({ "10_pastel": { pastel: 12, girl: 3 } }),
    ss_dataset_dirs: JSON.stringify({ "10_pastel": { n_repeats: 10, img_count: 20 } }),
    ss_note: "{'python': 'repr'}",
    sshs_model_hash: "abcdef0123456789",
    other: "[1, 2]",
  });
  await writeFile(join(root, "sub", "deeper", "pastel.png"), "img");
  await writeFile(join(root, "sub", "deeper", "pastel.json"), "{ not json");
  await writeLora(join(tmp, "elsewhere", "outside.safetensors"), {
    "modelspec.architecture": "stable-diffusion-v2-768-v/lora",
  });
  await symlink(join(tmp, "elsewhere", "outside.safetensors"), join(root, "linked.safetensors"));
  await symlink(root, join(root, "sub", "loop")); // a cycle: must be skipped
  await symlink(join(tmp, "missing-target"), join(root, "dangling.safetensors"));
  await writeFile(join(root, "old.pt"), Buffer.from("not really a pickle"));
  await copyFile(fixtureLora, join(root, "Upper.SAFETENSORS"));
  await writeFile(join(root, "readme.txt"), "ignored");
  // header length field larger than the file
  const broken = Buffer.alloc(16);
  broken.writeBigUInt64LE(1000n, 0);
  await writeFile(join(root, "broken.safetensors"), broken);
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test("walks recursively, follows symlinks, skips cycles, keeps only LoRA extensions", async () => {
  const l = await scanLibrary(root);
  const names = l.entries.map((e) => e.name).sort();
  assert.deepEqual(names, ["Upper", "broken", "ink", "linked", "old", "pastel"]);
  assert.deepEqual(l.cyclesSkipped, [join(root, "sub", "loop")]);
  assert.ok(l.unreadable.some((u) => u.path.endsWith("dangling.safetensors")));
  const pastel = byName(l.entries, "pastel")[0];
  assert.equal(pastel.folder, join("sub", "deeper"));
  assert.equal(pastel.path, join(root, "sub", "deeper", "pastel.safetensors"));
  assert.equal(byName(l.entries, "Upper")[0].extension, ".safetensors");
});

test("hashes equal SHA-256 of the file and of the bytes after the header", async () => {
  const l = await scanLibrary(root);
  for (const name of ["ink", "pastel", "linked", "Upper"]) {
    const e = byName(l.entries, name)[0];
    const ref = referenceHashes(e.path);
    assert.equal(e.hashes?.sha256, ref.sha256, name);
    assert.equal(e.hashes?.autoV2, ref.sha256.slice(0, 10), name);
    assert.equal(e.hashes?.addnet, ref.addnet, name);
    assert.equal(e.hashes?.addnetShort, ref.addnet.slice(0, 12), name);
  }
  const ink = byName(l.entries, "ink")[0];
  assert.equal(ink.shortHash, referenceHashes(ink.path).addnet.slice(0, 12));
  // the addnet hash ignores the header, so the same tensors under other metadata hash the same
  assert.equal(byName(l.entries, "pastel")[0].hashes?.addnet, ink.hashes?.addnet);
  // sshs_model_hash, when present, is what A1111 shows
  assert.equal(byName(l.entries, "pastel")[0].shortHash, "abcdef012345");
  // a pickle file: full-file hash only, listed as unsupported with the reason
  const old = byName(l.entries, "old")[0];
  assert.equal(old.supported, false);
  assert.match(old.reason ?? "", /pickle/);
  assert.equal(old.hashes?.addnet, null);
  assert.equal(old.hashes?.sha256, createHash("sha256").update("not really a pickle").digest("hex"));
  assert.equal(old.shortHash, old.hashes?.sha256.slice(0, 12));
});

test("a header over 1 MiB: the addnet hash still starts exactly at 8 + N", async () => {
  const big = join(tmp, "bigheader", "big.safetensors");
  await mkdir(join(tmp, "bigheader"));
  await writeLora(big, { ss_comment: "x".repeat(1_500_000) });
  const l = await scanLibrary(join(tmp, "bigheader"));
  assert.equal(l.entries[0].hashes?.addnet, referenceHashes(big).addnet);
  assert.equal(l.entries[0].hashes?.sha256, referenceHashes(big).sha256);
});

test("adapter summary, alias, family from metadata or keys", async () => {
  const l = await scanLibrary(root);
  const ink = byName(l.entries, "ink")[0];
  assert.equal(ink.alias, "ink");
  assert.equal(ink.format, "kohya");
  assert.deepEqual(ink.ranks, [4]);
  assert.deepEqual(ink.alphas, [4]);
  assert.equal(ink.moduleCount, 88);
  assert.deepEqual(ink.components, ["unet"]);
  assert.equal(ink.familySource, "keys");
  const pastel = byName(l.entries, "pastel")[0];
  assert.equal(pastel.alias, "pastel-style");
  assert.equal(pastel.family, "sdxl");
  assert.equal(pastel.familySource, "ss_base_model_version");
  const linked = byName(l.entries, "linked")[0];
  assert.equal(linked.family, "sd2");
  assert.equal(linked.familySource, "modelspec.architecture");
});

test("ss_* JSON strings are decoded; other values stay strings", async () => {
  const pastel = byName((await scanLibrary(root)).entries, "pastel")[0];
  assert.deepEqual(pastel.metadata.ss_tag_frequency, { "10_pastel": { pastel: 12, girl: 3 } });
  assert.deepEqual(pastel.metadata.ss_dataset_dirs, { "10_pastel": { n_repeats: 10, img_count: 20 } });
  assert.equal(pastel.metadata.ss_note, "{'python': 'repr'}");
  assert.equal(pastel.metadata.ss_base_model_version, "sdxl_base_v1-0");
  assert.equal(pastel.metadata.other, "[1, 2]");
});

test("user metadata sidecar and preview image", async () => {
  const l = await scanLibrary(root);
  const ink = byName(l.entries, "ink")[0];
  assert.deepEqual(
    { ...ink.userMetadata, raw: undefined },
    {
      description: "ink lines",
      notes: "n",
      sdVersion: "SD1",
      activationText: "inkstyle",
      preferredWeight: 0.7,
      negativeText: "blurry",
      raw: undefined,
    },
  );
  assert.equal(ink.userMetadata?.raw.extra, 1);
  assert.equal(ink.preview, join(root, "ink.preview.webp"));
  const pastel = byName(l.entries, "pastel")[0];
  assert.equal(pastel.userMetadata, null);
  assert.match(pastel.userMetadataError ?? "", /pastel\.json/);
  assert.equal(pastel.preview, join(root, "sub", "deeper", "pastel.png"));
});

test("a corrupt file is listed with its reason, not thrown", async () => {
  const broken = byName((await scanLibrary(root)).entries, "broken")[0];
  assert.equal(broken.supported, false);
  assert.match(broken.reason ?? "", /broken\.safetensors/);
  assert.equal(broken.hashes?.sha256, referenceHashes(broken.path).sha256);
});

test("names resolve against a scanned folder", async () => {
  const l = await scanLibrary(root);
  const r = resolveNetworks(parsePrompt("<lora:pastel-style:0.5> <lora:ink> <lora:nope>"), l.entries);
  assert.equal(r.networks[0].entry?.name, "pastel");
  assert.equal(r.networks[1].entry?.name, "ink");
  assert.equal(r.notFoundMessage, "Lora not found: nope");
});

test("cache: a second listing reads no file data; a changed mtime or size is re-read", async () => {
  const lib = join(tmp, "cached");
  const cacheDir = join(tmp, "cache");
  await mkdir(lib);
  const a = join(lib, "a.safetensors");
  await copyFile(fixtureLora, a);
  await copyFile(fixtureLora, join(lib, "b.safetensors"));
  // whole seconds, so the mtime can be put back exactly after the edit below
  await utimes(a, 1_700_000_000, 1_700_000_000);
  const first = await scanLibrary(lib, { cacheDir });
  assert.deepEqual(first.stats, { files: 2, fromCache: 0, analyzed: 2 });
  const cacheFiles = await readdir(cacheDir);
  assert.deepEqual(cacheFiles, ["lora-library-cache.json"]); // no temp file left behind
  JSON.parse(await readFile(join(cacheDir, cacheFiles[0]), "utf8"));

  // Change tensor bytes but keep size and mtime: a listing that read the file would see a new hash.
  const bytes = readFileSync(a);
  bytes[bytes.length - 1] ^= 0xff;
  await writeFile(a, bytes);
  await utimes(a, 1_700_000_000, 1_700_000_000);
  assert.equal((await stat(a)).size, bytes.length);
  const second = await scanLibrary(lib, { cacheDir });
  assert.deepEqual(second.stats, { files: 2, fromCache: 2, analyzed: 0 });
  assert.equal(byName(second.entries, "a")[0].hashes?.sha256, byName(first.entries, "a")[0].hashes?.sha256);

  // A new mtime invalidates the record: the hash now matches the modified bytes.
  await utimes(a, new Date(), new Date(Date.now() + 5000));
  const third = await scanLibrary(lib, { cacheDir });
  assert.deepEqual(third.stats, { files: 2, fromCache: 1, analyzed: 1 });
  assert.equal(byName(third.entries, "a")[0].hashes?.sha256, referenceHashes(a).sha256);

  // Deleted files are pruned from the cache.
  await rm(join(lib, "b.safetensors"));
  await scanLibrary(lib, { cacheDir });
  const cached = JSON.parse(await readFile(join(cacheDir, "lora-library-cache.json"), "utf8"));
  assert.deepEqual(Object.keys(cached.entries), [a]);
});

test("cache: a corrupt cache file is reported and rebuilt", async () => {
  const lib = join(tmp, "cached2");
  const cacheDir = join(tmp, "cache2");
  await mkdir(lib);
  await mkdir(cacheDir);
  await copyFile(fixtureLora, join(lib, "a.safetensors"));
  await writeFile(join(cacheDir, "lora-library-cache.json"), "{ truncated");
  const l = await scanLibrary(lib, { cacheDir });
  assert.match(l.cacheError ?? "", /rebuilt/);
  assert.equal(l.stats.analyzed, 1);
  const again = await scanLibrary(lib, { cacheDir });
  assert.equal(again.cacheError, null);
  assert.equal(again.stats.fromCache, 1);
});

test("a cache that cannot be written is reported, the listing still succeeds", async () => {
  const blocker = join(tmp, "a-file");
  await writeFile(blocker, "x");
  const l = await scanLibrary(join(tmp, "cached2"), { cacheDir: join(blocker, "cache") });
  assert.equal(l.entries.length, 1);
  assert.match(l.cacheError ?? "", /cannot write the cache/);
});

test("a path that is not a folder is an error naming it", async () => {
  await assert.rejects(scanLibrary(fixtureLora), /not a folder/);
  await assert.rejects(scanLibrary(join(tmp, "does-not-exist")), /ENOENT/);
});
