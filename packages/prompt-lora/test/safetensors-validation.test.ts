// Every validation rule of the reader on a crafted file, plus fast-check fuzzing: corrupted or truncated files
// must fail with SafetensorsError and nothing else.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { SafetensorsError } from "../src/safetensors/errors.ts";
import { openSafetensors } from "../src/safetensors/reader.ts";
import { writeSafetensors } from "../src/safetensors/writer.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "safetensors-validation-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file with the given header bytes (length prefix = their length unless overridden) and data bytes. */
function craft(header: string | Uint8Array, dataBytes = 0, declaredLength?: bigint): Uint8Array {
  const json = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) =>
  JSON.stringify({ dtype: "F32", shape, data_offsets: [begin, end] });

let counter = 0;
async function expectError(bytes: Uint8Array, code: string, key?: string): Promise<void> {
  const path = join(dir, `case-${counter++}.safetensors`);
  await writeFile(path, bytes);
  await assert.rejects(openSafetensors(path), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.file, path);
    assert.ok(e.message.startsWith(path), e.message);
    if (key !== undefined) {
      assert.equal(e.key, key, e.message);
      assert.ok(e.message.includes(`[${key}]`), e.message);
    }
    return true;
  });
}

test("header length: too small a file, over 100 MB, larger than the file", async () => {
  await expectError(new Uint8Array(5), "HEADER_TOO_SMALL");
  await expectError(craft("{}", 0, 100_000_001n), "HEADER_TOO_LARGE");
  await expectError(craft("{}", 0, 1n << 63n), "HEADER_TOO_LARGE");
  await expectError(craft("{}", 0, 1000n), "INVALID_HEADER_LENGTH");
});

test("header text: invalid UTF-8, invalid JSON, not an object", async () => {
  await expectError(
    craft(
      Uint8Array.from([...new TextEncoder().encode('{"a'), 0xff, 0xfe, ...new TextEncoder().encode('":1}')]),
    ),
    "INVALID_UTF8",
  );
  await expectError(craft(Uint8Array.from([0x7b, 0xc3, 0x7d])), "INVALID_UTF8"); // truncated 2-byte sequence
  await expectError(craft('{"a": '), "INVALID_JSON");
  await expectError(craft("{}\u0000\u0000"), "INVALID_JSON"); // NUL padding is not JSON whitespace
  await expectError(craft("[1, 2]"), "HEADER_NOT_OBJECT");
  await expectError(craft("null"), "HEADER_NOT_OBJECT");
  await expectError(craft('"tensor"'), "HEADER_NOT_OBJECT");
});

test("duplicate keys at the top level, inside a tensor entry, inside __metadata__, and via escapes", async () => {
  await expectError(craft(`{"a":${f32(0, 4)},"a":${f32(0, 4)}}`, 4), "DUPLICATE_KEY", "a");
  await expectError(
    craft(`{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, 4),
    "DUPLICATE_KEY",
    "a",
  );
  await expectError(craft(`{"__metadata__":{"x":"1","x":"2"}}`), "DUPLICATE_KEY", "__metadata__");
  await expectError(craft(`{"a":${f32(0, 4)},"\\u0061":${f32(0, 4)}}`, 4), "DUPLICATE_KEY", "a");
  // Same key text in different objects is fine; so is a key that only looks like one inside a string.
  const ok = join(dir, "ok-keys.safetensors");
  await writeFile(
    ok,
    craft(`{"__metadata__":{"a":"{\\"b\\":1,\\"b\\":2}"},"a":${f32(0, 4)},"b\\"":${f32(4, 8)}}`, 8),
  );
  const file = await openSafetensors(ok);
  assert.deepEqual([...file.tensors.keys()], ["a", 'b"']);
  await file.close();
});

test("__metadata__ must be an object of strings", async () => {
  await expectError(craft(`{"__metadata__":{"epochs":10}}`), "INVALID_METADATA", "__metadata__");
  await expectError(craft(`{"__metadata__":{"nested":{"x":"y"}}}`), "INVALID_METADATA", "__metadata__");
  await expectError(craft(`{"__metadata__":["x"]}`), "INVALID_METADATA", "__metadata__");
  await expectError(craft(`{"__metadata__":"x"}`), "INVALID_METADATA", "__metadata__");
});

test("tensor entries: shape of the entry, dtype, shape, offsets, size", async () => {
  await expectError(craft(`{"w":5}`), "INVALID_TENSOR_INFO", "w");
  await expectError(craft(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, 4), "INVALID_TENSOR_INFO", "w");
  await expectError(
    craft(`{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16),
    "UNKNOWN_DTYPE",
    "w",
  );
  await expectError(craft(`{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4), "UNKNOWN_DTYPE", "w");
  await expectError(
    craft(`{"w":{"dtype":"toString","shape":[1],"data_offsets":[0,4]}}`, 4),
    "UNKNOWN_DTYPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,10]}}`, 10),
    "INVALID_SHAPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4),
    "INVALID_SHAPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":"4","data_offsets":[0,16]}}`, 16),
    "INVALID_SHAPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}`, 4),
    "INVALID_SHAPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[1073741824,1073741824,1073741824],"data_offsets":[0,4]}}`, 4),
    "INVALID_SHAPE",
    "w",
  );
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, 4),
    "INVALID_OFFSETS",
    "w",
  );
  await expectError(craft(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, 4), "INVALID_OFFSETS", "w");
  await expectError(
    craft(`{"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}`, 4),
    "INVALID_OFFSETS",
    "w",
  );
  await expectError(craft(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "SIZE_MISMATCH", "w");
  await expectError(
    craft(`{"w":{"dtype":"F16","shape":[2, 3],"data_offsets":[0,24]}}`, 24),
    "SIZE_MISMATCH",
    "w",
  );
});

test("byte ranges must tile the data area: overlap, hole, past the end (truncated), trailing bytes", async () => {
  await expectError(craft(`{"a":${f32(0, 8)},"b":${f32(4, 12)}}`, 12), "OVERLAPPING_TENSORS", "b");
  await expectError(craft(`{"a":${f32(0, 8)},"b":${f32(0, 8)}}`, 8), "OVERLAPPING_TENSORS");
  await expectError(craft(`{"a":${f32(0, 4)},"b":${f32(8, 12)}}`, 12), "HOLE_IN_DATA", "b");
  await expectError(craft(`{"a":${f32(4, 8)}}`, 8), "HOLE_IN_DATA", "a");
  await expectError(craft(`{"a":${f32(0, 8)}}`, 4), "OUT_OF_BOUNDS", "a");
  await expectError(craft(`{"a":${f32(0, 4)}}`, 8), "INCOMPLETE_DATA");
  await expectError(craft(`{}`, 1), "INCOMPLETE_DATA");
  // Order in the header does not matter, only the ranges; zero-sized tensors are allowed.
  const ok = join(dir, "ok-order.safetensors");
  await writeFile(ok, craft(`{"b":${f32(4, 8)},"empty":${f32(8, 8, [0, 3])},"a":${f32(0, 4)}}`, 8));
  const file = await openSafetensors(ok);
  assert.deepEqual([...file.tensors.keys()], ["b", "empty", "a"]);
  assert.equal(file.tensors.get("b")!.fileOffset, file.dataStart + 4);
  assert.equal((await file.readFloat32("empty")).length, 0);
  await file.close();
});

test("a file truncated after it was opened fails its read with TRUNCATED", async () => {
  const path = join(dir, "shrinks.safetensors");
  await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [1024], data: new Float32Array(1024) }]);
  const file = await openSafetensors(path);
  try {
    await truncate(path, file.dataStart + 100);
    await assert.rejects(file.readRaw("w"), (e: SafetensorsError) => e.code === "TRUNCATED" && e.key === "w");
  } finally {
    await file.close();
  }
});

test("a missing file is an IO_ERROR naming it", async () => {
  const path = join(dir, "does-not-exist.safetensors");
  await assert.rejects(
    openSafetensors(path),
    (e: SafetensorsError) => e.code === "IO_ERROR" && e.message.includes(path),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Fuzzing

/** Opens and reads everything; returns normally or throws whatever the reader throws. */
async function readAll(path: string): Promise<void> {
  const file = await openSafetensors(path);
  try {
    for (const [name, info] of file.tensors) {
      const raw = await file.readRaw(name);
      assert.equal(raw.byteLength, info.byteLength);
      await file.readFloat32(name);
    }
  } finally {
    await file.close();
  }
}

async function onlySafetensorsErrors(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(path, bytes);
  try {
    await readAll(path);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw e;
  }
}

async function validFile(): Promise<Uint8Array> {
  const path = join(dir, "fuzz-base.safetensors");
  await writeSafetensors(
    path,
    [
      {
        name: "lora_unet_a.lora_down.weight",
        dtype: "F16",
        shape: [4, 8],
        data: new Uint16Array(32).fill(0x3c00),
      },
      {
        name: "lora_unet_a.lora_up.weight",
        dtype: "BF16",
        shape: [8, 4],
        data: new Uint16Array(32).fill(0x3f80),
      },
      { name: "lora_unet_a.alpha", dtype: "F32", shape: [], data: Float32Array.of(4) },
      { name: "ids", dtype: "I64", shape: [3], data: BigInt64Array.of(1n, 2n, 3n) },
      { name: "fp8", dtype: "F8_E4M3", shape: [2, 2], data: Uint8Array.of(0x38, 0x7f, 0x01, 0xb8) },
    ],
    { ss_network_dim: "4", ss_tag_frequency: '{"a": 1}' },
  );
  return readFile(path);
}

test("fuzz: random byte mutations (biased to the header) never raise anything but SafetensorsError", async () => {
  const base = await validFile();
  const headerEnd = 8 + Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const path = join(dir, "fuzz-mutate.safetensors");
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          position: fc.oneof(
            fc.integer({ min: 0, max: headerEnd - 1 }),
            fc.integer({ min: 0, max: base.length - 1 }),
          ),
          value: fc.oneof(
            fc.integer({ min: 0, max: 255 }),
            fc.constantFrom(...[...'{}[]",:-.0123456789eE \\'].map((c) => c.charCodeAt(0))),
          ),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      async (mutations) => {
        const bytes = base.slice();
        for (const { position, value } of mutations) bytes[position] = value;
        await onlySafetensorsErrors(path, bytes);
      },
    ),
    { numRuns: 300, seed: 20261122 },
  );
});

test("fuzz: every truncation length and random insertions/deletions never raise anything but SafetensorsError", async () => {
  const base = await validFile();
  const path = join(dir, "fuzz-truncate.safetensors");
  for (let length = 0; length < base.length; length += 7) {
    await writeFile(path, base.subarray(0, length));
    await assert.rejects(readAll(path), SafetensorsError, `truncated to ${length} bytes`);
  }
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: base.length }),
      fc.integer({ min: 0, max: 16 }),
      fc.uint8Array({ maxLength: 16 }),
      async (at, removed, inserted) => {
        const bytes = new Uint8Array([...base.subarray(0, at), ...inserted, ...base.subarray(at + removed)]);
        await onlySafetensorsErrors(path, bytes);
      },
    ),
    { numRuns: 200, seed: 7 },
  );
});

test("fuzz: arbitrary JSON headers never raise anything but SafetensorsError", async () => {
  const path = join(dir, "fuzz-json.safetensors");
  const entry = fc.record(
    {
      dtype: fc.oneof(
        fc.constantFrom("F32", "F16", "BF16", "I64", "U8", "BOOL", "F99", "__proto__"),
        fc.jsonValue(),
      ),
      shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 4 }), { maxLength: 3 }), fc.jsonValue()),
      data_offsets: fc.oneof(fc.tuple(fc.nat(64), fc.nat(64)), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );
  const header = fc.dictionary(
    fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.constantFrom("__metadata__", "__proto__", "constructor", "0", "1"),
    ),
    fc.oneof(entry, fc.jsonValue(), fc.dictionary(fc.string(), fc.string())),
    { maxKeys: 5 },
  );
  await fc.assert(
    fc.asyncProperty(header, fc.nat(64), async (h, dataBytes) => {
      await onlySafetensorsErrors(path, craft(JSON.stringify(h), dataBytes));
    }),
    { numRuns: 300, seed: 42 },
  );
});
