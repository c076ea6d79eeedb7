// Reader and writer against the real fixtures, byte-level round trips and the writer's atomicity.
import assert from "node:assert/strict";
import { mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ALL_DTYPES, dtypeByteSize, f32ToF16 } from "../src/safetensors/dtypes.ts";
import { SafetensorsError } from "../src/safetensors/errors.ts";
import { openSafetensors, readSafetensors } from "../src/safetensors/reader.ts";
import type { TensorToWrite } from "../src/safetensors/types.ts";
import { writeSafetensors } from "../src/safetensors/writer.ts";
import { atomicWriteFile, withAtomicPath } from "../src/util/atomic.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
const tinySd1 = join(fixtures, "tiny-sd1");
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-io-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

test("tiny-sd1.safetensors: every tensor's name, shape and dtype match tiny-sd1.keys.json", async () => {
  const expected = JSON.parse(await readFile(join(tinySd1, "tiny-sd1.keys.json"), "utf8")) as {
    n_tensors: number;
    keys: Record<string, { shape: number[]; dtype: string }>;
  };
  const file = await openSafetensors(join(tinySd1, "tiny-sd1.safetensors"));
  try {
    assert.equal(file.tensors.size, expected.n_tensors);
    assert.equal(file.dataStart, 8 + file.headerByteLength);
    for (const [name, want] of Object.entries(expected.keys)) {
      const info = file.tensors.get(name);
      assert.ok(info, `missing ${name}`);
      assert.deepEqual(info.shape, want.shape, name);
      assert.equal(info.dtype, want.dtype, name);
    }
    // Data of a few tensors: an F32 view has the declared element count and finite values.
    for (const name of [...file.tensors.keys()].slice(0, 5)) {
      const data = await file.readFloat32(name);
      const info = file.tensors.get(name)!;
      assert.equal(
        data.length,
        info.shape.reduce((a, b) => a * b, 1),
      );
      assert.ok(data.every(Number.isFinite));
    }
  } finally {
    await file.close();
  }
});

test("reference fixtures: shapes, dtypes and statistics agree with the JSON sidecars", async () => {
  const index = JSON.parse(await readFile(join(tinySd1, "reference", "index.json"), "utf8")) as Record<
    string,
    { file: string; sidecar: string; bytes: number }
  >;
  let checkedStats = 0;
  for (const entry of Object.values(index)) {
    // Sidecars are written by Python's json, which emits bare -Infinity/NaN in scheduler configs.
    const text = (await readFile(join(tinySd1, "reference", entry.sidecar), "utf8")).replace(
      /: (-?Infinity|NaN)\b/g,
      ": null",
    );
    const sidecar = JSON.parse(text) as {
      tensors: Record<
        string,
        { shape: number[]; dtype: string; stats?: { mean: number; min: number; max: number } }
      >;
    };
    const { tensors } = await readSafetensors(join(tinySd1, "reference", entry.file));
    assert.deepEqual(new Set(tensors.keys()), new Set(Object.keys(sidecar.tensors)), entry.file);
    for (const [name, want] of Object.entries(sidecar.tensors)) {
      const got = tensors.get(name)!;
      assert.deepEqual(got.shape, want.shape, `${entry.file} ${name}`);
      assert.equal(got.dtype, want.dtype, `${entry.file} ${name}`);
      if (!want.stats) continue;
      let sum = 0;
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (const v of got.data) {
        sum += v;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      assert.equal(min, Math.fround(want.stats.min), `${entry.file} ${name} min`);
      assert.equal(max, Math.fround(want.stats.max), `${entry.file} ${name} max`);
      assert.ok(Math.abs(sum / got.data.length - want.stats.mean) < 1e-5, `${entry.file} ${name} mean`);
      checkedStats++;
    }
  }
  assert.ok(checkedStats > 10);
});

test("kohya LoRA fixtures open; the fp16 file holds the fp32 file's weights rounded to nearest half", async () => {
  const lora = join(tinySd1, "lora");
  const f32 = await openSafetensors(join(lora, "tiny-sd1-lora-kohya.safetensors"));
  const f16 = await openSafetensors(join(lora, "tiny-sd1-lora-kohya.fp16.safetensors"));
  const alpha1 = await readSafetensors(join(lora, "tiny-sd1-lora-kohya-alpha1.safetensors"));
  try {
    assert.equal(f32.tensors.size, 264);
    assert.deepEqual([...f16.tensors.keys()].sort(), [...f32.tensors.keys()].sort());
    assert.deepEqual([...alpha1.tensors.keys()].sort(), [...f32.tensors.keys()].sort());
    assert.equal(f32.metadata.ss_network_module, "networks.lora");
    let compared = 0;
    for (const [name, info] of f32.tensors) {
      const half = f16.tensors.get(name)!;
      assert.deepEqual(half.shape, info.shape, name);
      if (half.dtype !== "F16" || info.dtype !== "F32") continue;
      const want = f32ToF16(await f32.readFloat32(name));
      const raw = await f16.readRaw(name);
      assert.deepEqual(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2), want, name);
      compared++;
    }
    assert.ok(compared > 100);
  } finally {
    await f32.close();
    await f16.close();
  }
});

test("every dtype round-trips byte for byte, lazily supplied data included, in the given order", async () => {
  const tensors: TensorToWrite[] = ALL_DTYPES.map((dtype, i) => {
    const shape = [3, i + 1];
    const bytes = randomBytes(3 * (i + 1) * dtypeByteSize(dtype), i + 1);
    return { name: `t.${dtype}`, dtype, shape, data: i % 2 === 0 ? bytes : async () => bytes };
  });
  // Integer-like names must keep their place (a plain JSON.stringify of one object would move them first).
  tensors.push({ name: "10", dtype: "U8", shape: [0], data: new Uint8Array(0) });
  tensors.push({ name: "2", dtype: "F32", shape: [], data: Float32Array.of(7.5) });
  const path = join(dir, "all-dtypes.safetensors");
  // fromEntries, because "__proto__" in an object literal would set the prototype instead of a key.
  const metadata = Object.fromEntries([
    ["ss_network_dim", "4"],
    ["__proto__", "plain data"],
    ["unicode", "Grüße ✓"],
  ]);
  await writeSafetensors(path, tensors, metadata);
  const file = await openSafetensors(path);
  try {
    assert.equal(file.dataStart % 8, 0, "header padded to a multiple of 8");
    assert.deepEqual(
      [...file.tensors.keys()],
      tensors.map((t) => t.name),
    );
    assert.equal(Object.getPrototypeOf(file.metadata), Object.prototype);
    assert.deepEqual(Object.entries(file.metadata), [
      ["ss_network_dim", "4"],
      ["__proto__", "plain data"],
      ["unicode", "Grüße ✓"],
    ]);
    for (const t of tensors) {
      const info = file.tensors.get(t.name)!;
      assert.deepEqual(info.shape, t.shape);
      assert.equal(info.dtype, t.dtype);
      const want = typeof t.data === "function" ? await t.data() : t.data;
      const got = await file.readRaw(t.name);
      assert.equal(got.byteOffset % 8, 0, "readRaw gives an aligned buffer");
      assert.deepEqual(
        new Uint8Array(got),
        new Uint8Array(want.buffer, want.byteOffset, want.byteLength),
        t.name,
      );
    }
    assert.deepEqual([...(await file.readFloat32("2"))], [7.5]);
    await assert.rejects(
      file.readRaw("nope"),
      (e: SafetensorsError) => e.code === "TENSOR_NOT_FOUND" && e.key === "nope",
    );
  } finally {
    await file.close();
  }
  await assert.rejects(file.readRaw("2"), (e: SafetensorsError) => e.code === "CLOSED");
  // The whole layout is what the format says: u64 length, JSON, data in order.
  const bytes = await readFile(path);
  const n = Number(bytes.readBigUInt64LE(0));
  let dataBytes = 0;
  for (const t of tensors) dataBytes += (typeof t.data === "function" ? await t.data() : t.data).byteLength;
  assert.equal(bytes.length, 8 + n + dataBytes);
  assert.match(bytes.subarray(8, 8 + n).toString("utf8"), /^\{"__metadata__":\{.*\} *$/);
});

test("files over 4 GiB: tensors past the 2^31 and 2^32 byte marks are read at the right offset (sparse file)", async () => {
  const big = 2 ** 32 + 24; // the padding tensor alone is larger than 4 GiB; sparse, so no disk is used
  const header = JSON.stringify({
    pad: { dtype: "U8", shape: [big], data_offsets: [0, big] },
    tail: { dtype: "F32", shape: [2], data_offsets: [big, big + 8] },
  });
  const json = new TextEncoder().encode(header.padEnd(Math.ceil(header.length / 8) * 8, " "));
  const path = join(dir, "sparse-4g.safetensors");
  const handle = await open(path, "w");
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    await handle.write(prefix, 0, 8, 0);
    await handle.write(json, 0, json.length, 8);
    await handle.write(new Uint8Array(Float32Array.of(1.5, -2).buffer), 0, 8, 8 + json.length + big);
  } finally {
    await handle.close();
  }
  const file = await openSafetensors(path);
  try {
    assert.equal(file.tensors.get("tail")!.fileOffset, 8 + json.length + big);
    assert.deepEqual([...(await file.readFloat32("tail"))], [1.5, -2]);
    assert.equal(file.tensors.get("pad")!.byteLength, big);
  } finally {
    await file.close();
    await rm(path);
  }
});

test("many small tensors (buffered writes) and one tensor larger than the write buffer", async () => {
  const small = Array.from({ length: 2000 }, (_, i) => ({
    name: `lora_unet_${i}.alpha`,
    dtype: "F32" as const,
    shape: [],
    data: Float32Array.of(i),
  }));
  const big = randomBytes(9 << 20, 7);
  const path = join(dir, "mixed.safetensors");
  await writeSafetensors(path, [
    ...small.slice(0, 1000),
    { name: "big", dtype: "U8", shape: [big.length], data: big },
    ...small.slice(1000),
  ]);
  const file = await openSafetensors(path);
  try {
    assert.equal(file.tensors.size, 2001);
    assert.deepEqual(new Uint8Array(await file.readRaw("big")), big);
    assert.deepEqual([...(await file.readFloat32("lora_unet_1999.alpha"))], [1999]);
    assert.deepEqual([...(await file.readFloat32("lora_unet_0.alpha"))], [0]);
  } finally {
    await file.close();
  }
});

test("writer rejects bad input before creating anything", async () => {
  const path = join(dir, "bad-input.safetensors");
  const cases: [TensorToWrite[], Record<string, string> | undefined, string][] = [
    [[{ name: "a", dtype: "F99" as never, shape: [1], data: new Uint8Array(4) }], undefined, "UNKNOWN_DTYPE"],
    [[{ name: "a", dtype: "F32", shape: [-1], data: new Uint8Array(4) }], undefined, "INVALID_SHAPE"],
    [[{ name: "a", dtype: "F32", shape: [1.5], data: new Uint8Array(4) }], undefined, "INVALID_SHAPE"],
    [
      [
        { name: "a", dtype: "F32", shape: [1], data: new Uint8Array(4) },
        { name: "a", dtype: "F32", shape: [1], data: new Uint8Array(4) },
      ],
      undefined,
      "DUPLICATE_KEY",
    ],
    [
      [{ name: "__metadata__", dtype: "F32", shape: [1], data: new Uint8Array(4) }],
      undefined,
      "INVALID_TENSOR",
    ],
    [[], { a: 1 as unknown as string }, "INVALID_METADATA"],
    [[{ name: "a", dtype: "F16", shape: [2], data: new Float32Array(2) }], undefined, "INVALID_TENSOR"],
  ];
  for (const [tensors, metadata, code] of cases) {
    await assert.rejects(writeSafetensors(path, tensors, metadata), (e: SafetensorsError) => {
      assert.ok(e instanceof SafetensorsError, String(e));
      assert.equal(e.code, code);
      assert.ok(e.message.includes(path));
      return true;
    });
  }
  assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n.includes("bad-input"))), []);
});

test("a failing lazy tensor leaves no final file and no temp file; an existing file stays intact", async () => {
  const sub = await mkdtemp(join(dir, "atomic-"));
  const path = join(sub, "out.safetensors");
  let produced = 0;
  const failing: TensorToWrite[] = [
    {
      name: "ok",
      dtype: "F32",
      shape: [1 << 20],
      data: () => {
        produced++;
        return new Float32Array(1 << 20);
      },
    },
    {
      name: "boom",
      dtype: "F32",
      shape: [1],
      data: () => {
        throw new Error("disk full (simulated by the data source)");
      },
    },
  ];
  await assert.rejects(writeSafetensors(path, failing), /disk full/);
  assert.equal(produced, 1, "tensors before the failure were produced lazily");
  assert.deepEqual(await readdir(sub), []);

  await writeFile(path, "previous contents");
  await assert.rejects(writeSafetensors(path, failing), /disk full/);
  assert.deepEqual(await readdir(sub), ["out.safetensors"]);
  assert.equal(await readFile(path, "utf8"), "previous contents");

  // Success replaces it.
  await writeSafetensors(path, [{ name: "x", dtype: "U8", shape: [1], data: Uint8Array.of(9) }]);
  assert.deepEqual(await readdir(sub), ["out.safetensors"]);
  assert.deepEqual([...(await readSafetensors(path)).tensors.get("x")!.data], [9]);
});

test("atomicWriteFile and withAtomicPath: temp name in the same folder, cleanup on error", async () => {
  const sub = await mkdtemp(join(dir, "atomic-util-"));
  const path = join(sub, "notes.json");
  await atomicWriteFile(path, "one");
  await atomicWriteFile(path, new TextEncoder().encode("two"));
  assert.equal(await readFile(path, "utf8"), "two");
  let seenTmp = "";
  await assert.rejects(
    withAtomicPath(path, async (tmp) => {
      seenTmp = tmp;
      await writeFile(tmp, "partial");
      throw new Error("interrupted");
    }),
    /interrupted/,
  );
  assert.equal(join(seenTmp, ".."), sub);
  assert.match(seenTmp, new RegExp(`/\\.notes\\.json\\.tmp-${process.pid}-[0-9a-f]+$`));
  assert.deepEqual(await readdir(sub), ["notes.json"]);
  assert.equal(await readFile(path, "utf8"), "two");
  const result = await withAtomicPath(path, async (tmp) => {
    await writeFile(tmp, "three");
    return 42;
  });
  assert.equal(result, 42);
  assert.equal(await readFile(path, "utf8"), "three");
});
