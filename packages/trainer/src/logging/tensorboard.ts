/**
 * A TensorBoard event-file writer. The file is a sequence of TFRecords (uint64 LE length, masked CRC-32C of
 * those 8 bytes, the data, masked CRC-32C of the data), each holding one tensorflow.Event protobuf:
 *   Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 * The first record is the "brain.Event:2" file_version event TensorBoard expects. The protobuf fields are
 * encoded by hand: it is five fields of three messages, and protobufjs would need the .proto schemas shipped
 * and loaded at runtime for what is a few dozen lines of byte writing that the tests decode independently.
 *
 * Event files are append-only logs, not replaced atomically: each record is written with a single append, and a
 * crash can only leave a truncated last record, which TensorBoard's reader stops at without error.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { maskedCrc32c } from "./crc32c.ts";

/**
 * kohya's tag names, so dashboards built for kohya runs read these logs too. kohya logs loss/epoch_average with
 * the epoch number (1-based) as the step, the others with the global optimizer step.
 */
export const KOHYA_TAGS = {
  lossCurrent: "loss/current",
  lossAverage: "loss/average",
  lossEpochAverage: "loss/epoch_average",
  lrUnet: "lr/unet",
  lrTextEncoder: "lr/textencoder",
} as const;

/** Distinguishes writers opened in the same second by the same process (e.g. a quick resume in a test). */
let fileCounter = 0;

class ProtoWriter {
  private bytes: number[] = [];

  private varint(v: bigint | number) {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.bytes.push(Number((x & 0x7fn) | 0x80n));
      x >>= 7n;
    }
    this.bytes.push(Number(x));
  }

  private tag(field: number, wireType: number) {
    this.varint((field << 3) | wireType);
  }

  double(field: number, v: number) {
    this.tag(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.bytes.push(...b);
  }

  float(field: number, v: number) {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes.push(...b);
  }

  int64(field: number, v: number) {
    this.tag(field, 0);
    this.varint(v);
  }

  bytesField(field: number, v: Uint8Array) {
    this.tag(field, 2);
    this.varint(v.length);
    this.bytes.push(...v);
  }

  string(field: number, v: string) {
    this.bytesField(field, new TextEncoder().encode(v));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export function encodeFileVersionEvent(wallTime: number): Uint8Array {
  const w = new ProtoWriter();
  w.double(1, wallTime);
  w.string(3, "brain.Event:2");
  return w.finish();
}

export function encodeScalarEvent(
  wallTime: number,
  step: number,
  scalars: readonly [string, number][],
): Uint8Array {
  const summary = new ProtoWriter();
  for (const [tag, value] of scalars) {
    const v = new ProtoWriter();
    v.string(1, tag);
    v.float(2, value);
    summary.bytesField(1, v.finish());
  }
  const w = new ProtoWriter();
  w.double(1, wallTime);
  w.int64(2, step);
  w.bytesField(5, summary.finish());
  return w.finish();
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

export class TensorBoardWriter {
  readonly path: string;
  private fd: number;

  /** Creates `dir` and a new events.out.tfevents.<seconds>.<host> file in it. */
  constructor(dir: string, now: () => number = () => Date.now() / 1000) {
    this.now = now;
    mkdirSync(dir, { recursive: true });
    const t = now();
    this.path = join(
      dir,
      `events.out.tfevents.${Math.floor(t)}.${hostname()}.${process.pid}.${fileCounter++}`,
    );
    this.fd = openSync(this.path, "ax");
    this.append(encodeFileVersionEvent(t));
  }

  private readonly now: () => number;

  /** Logs several scalars at one step in one event (as kohya's tracker does). */
  scalars(step: number, values: Record<string, number>): void {
    const entries = Object.entries(values).filter(([, v]) => typeof v === "number");
    if (entries.length > 0) this.append(encodeScalarEvent(this.now(), step, entries));
  }

  private append(event: Uint8Array) {
    const record = frameRecord(event);
    writeSync(this.fd, record, 0, record.length);
  }

  /** Makes what was written durable (called at checkpoints). */
  flush(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}
