import assert from "node:assert/strict";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  decodeLatent,
  encodeLatent,
  imageContentHash,
  LatentCache,
  latentCacheKey,
} from "../src/dataset/latent-cache.ts";

const assignment = {
  bucket: [64, 64] as [number, number],
  resized: [80, 64] as [number, number],
  crop: { left: 8, top: 0, width: 64, height: 64 },
};

test("the key changes with content, crop, flip and VAE, not with the file name", async () => {
  const dir = await mkdtemp(join(tmpdir(), "lat-"));
  await writeFile(join(dir, "a.png"), "same bytes");
  await writeFile(join(dir, "renamed.png"), "same bytes");
  await writeFile(join(dir, "edited.png"), "other bytes");
  const ha = await imageContentHash(join(dir, "a.png"));
  assert.equal(ha, await imageContentHash(join(dir, "renamed.png")));
  const base = { imageSha256: ha, assignment, flip: false, vaeId: "vae1" };
  const k = latentCacheKey(base);
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.notEqual(
    k,
    latentCacheKey({ ...base, imageSha256: await imageContentHash(join(dir, "edited.png")) }),
  );
  assert.notEqual(k, latentCacheKey({ ...base, flip: true }));
  assert.notEqual(k, latentCacheKey({ ...base, vaeId: "vae2" }));
  assert.notEqual(
    k,
    latentCacheKey({ ...base, assignment: { ...assignment, crop: { ...assignment.crop, left: 9 } } }),
  );
});

test("entries round-trip on disk, survive a new cache object, and a damaged entry is a miss", async () => {
  const dir = await mkdtemp(join(tmpdir(), "lat-"));
  const latent = { shape: [4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i) * 3) };
  const bytes = encodeLatent(latent);
  assert.equal(bytes.length, 12 + 12 + 256 * 4);
  assert.deepEqual(decodeLatent(bytes), latent);
  assert.equal(decodeLatent(bytes.subarray(0, bytes.length - 1)), undefined, "truncated");

  const key = "ab".padEnd(64, "0");
  let computed = 0;
  const compute = async () => {
    computed++;
    return latent;
  };
  const cache = new LatentCache(dir);
  await cache.getOrCompute(key, compute);
  await cache.getOrCompute(key, compute);
  assert.equal(computed, 1);
  const fresh = new LatentCache(dir);
  assert.deepEqual(await fresh.get(key), latent);
  assert.equal(fresh.hits, 1);

  const file = join(dir, "ab", `${key}.latent`);
  assert.deepEqual(await readdir(join(dir, "ab")), [`${key}.latent`]);
  await writeFile(file, bytes.subarray(0, 40));
  const afterDamage = new LatentCache(dir);
  assert.equal(await afterDamage.get(key), undefined);
  assert.equal(afterDamage.misses, 1);
  await afterDamage.getOrCompute(key, compute);
  assert.equal(computed, 2);
  assert.deepEqual(await new LatentCache(dir).get(key), latent);
});
