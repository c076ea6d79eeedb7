/**
 * Reads event files back with a reader written here from the TFRecord and protobuf specs: CRC-32C computed
 * bit by bit (no table), masking per TFRecord, and the Event/Summary/Value messages decoded field by field.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { crc32c } from "../src/logging/crc32c.ts";
import { KOHYA_TAGS, TensorBoardWriter } from "../src/logging/tensorboard.ts";

function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) {
      const lsb = crc & 1;
      crc >>>= 1;
      if (lsb) crc ^= 0x82f63b78;
    }
  }
  return ~crc >>> 0;
}

function masked(bytes: Uint8Array): number {
  const c = crc32cBitwise(bytes);
  const rotated = ((c >>> 15) | (c << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 2 ** 32;
}

interface Field {
  no: number;
  wire: number;
  value: bigint | Uint8Array | number;
}

function decodeFields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >> 3;
    const wire = key & 7;
    const dv = new DataView(buf.buffer, buf.byteOffset + i);
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 1) {
      out.push({ no, wire, value: dv.getFloat64(0, true) });
      i += 8;
    } else if (wire === 5) {
      out.push({ no, wire, value: dv.getFloat32(0, true) });
      i += 4;
    } else if (wire === 2) {
      const len = Number(varint());
      out.push({ no, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

interface DecodedEvent {
  wallTime?: number;
  step: bigint;
  fileVersion?: string;
  values: { tag: string; value: number }[];
}

function readEvents(path: string): DecodedEvent[] {
  const file = new Uint8Array(readFileSync(path));
  const events: DecodedEvent[] = [];
  let off = 0;
  while (off < file.length) {
    const lenBytes = file.subarray(off, off + 8);
    const view = new DataView(file.buffer, file.byteOffset + off);
    const len = Number(view.getBigUint64(0, true));
    assert.equal(view.getUint32(8, true), masked(lenBytes), "length CRC");
    const data = file.subarray(off + 12, off + 12 + len);
    assert.equal(
      new DataView(file.buffer, file.byteOffset + off + 12 + len).getUint32(0, true),
      masked(data),
      "data CRC",
    );
    off += 12 + len + 4;
    const ev: DecodedEvent = { step: 0n, values: [] };
    for (const f of decodeFields(data)) {
      if (f.no === 1 && f.wire === 1) ev.wallTime = f.value as number;
      else if (f.no === 2 && f.wire === 0) ev.step = f.value as bigint;
      else if (f.no === 3 && f.wire === 2) ev.fileVersion = new TextDecoder().decode(f.value as Uint8Array);
      else if (f.no === 5 && f.wire === 2) {
        for (const v of decodeFields(f.value as Uint8Array)) {
          assert.equal(v.no, 1, "Summary.value");
          let tag = "";
          let value = Number.NaN;
          for (const g of decodeFields(v.value as Uint8Array)) {
            if (g.no === 1) tag = new TextDecoder().decode(g.value as Uint8Array);
            if (g.no === 2 && g.wire === 5) value = g.value as number;
          }
          ev.values.push({ tag, value });
        }
      } else assert.fail(`unexpected Event field ${f.no}`);
    }
    events.push(ev);
  }
  return events;
}

test("CRC-32C matches the standard check value and a bitwise implementation", () => {
  const check = new TextEncoder().encode("123456789");
  assert.equal(crc32cBitwise(check), 0xe3069283);
  assert.equal(crc32c(check), 0xe3069283);
  const random = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919 + 13) & 0xff);
  assert.equal(crc32c(random), crc32cBitwise(random));
});

test("event files parse back: file_version first, then kohya-tagged scalars with steps", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tb-"));
  let t = 1_700_000_000.25;
  const w = new TensorBoardWriter(dir, () => (t += 0.5));
  w.scalars(1, {
    [KOHYA_TAGS.lossCurrent]: 0.125,
    [KOHYA_TAGS.lossAverage]: 0.25,
    [KOHYA_TAGS.lrUnet]: 1e-4,
  });
  w.scalars(2, { [KOHYA_TAGS.lossCurrent]: 0.0625, [KOHYA_TAGS.lrTextEncoder]: 5e-5 });
  w.scalars(300, { [KOHYA_TAGS.lossEpochAverage]: 0.09 });
  w.close();
  const files = readdirSync(dir);
  assert.equal(files.length, 1);
  assert.match(files[0], /^events\.out\.tfevents\.\d+\./);
  const events = readEvents(join(dir, files[0]));
  assert.equal(events.length, 4);
  assert.equal(events[0].fileVersion, "brain.Event:2");
  assert.equal(events[0].wallTime, 1_700_000_000.75);
  assert.equal(events[1].step, 1n);
  assert.equal(events[1].wallTime, 1_700_000_001.25);
  assert.deepEqual(events[1].values, [
    { tag: "loss/current", value: 0.125 },
    { tag: "loss/average", value: 0.25 },
    { tag: "lr/unet", value: Math.fround(1e-4) },
  ]);
  assert.deepEqual(events[2].values, [
    { tag: "loss/current", value: 0.0625 },
    { tag: "lr/textencoder", value: Math.fround(5e-5) },
  ]);
  assert.equal(events[3].step, 300n);
  assert.deepEqual(events[3].values, [{ tag: "loss/epoch_average", value: Math.fround(0.09) }]);
});
