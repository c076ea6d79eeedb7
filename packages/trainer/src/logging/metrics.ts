/**
 * metrics.jsonl: one JSON object per line per logged step, for scripts and notebooks. Append-only like the
 * TensorBoard log: each line is one append, so a crash can at most cut the last line short, and readMetrics
 * ignores an unterminated last line.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

export interface MetricsRecord {
  step: number;
  epoch: number;
  loss: number;
  loss_average?: number;
  lr_unet?: number;
  lr_textencoder?: number;
  wall_time: number;
  [key: string]: number | undefined;
}

export class MetricsWriter {
  private fd: number;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, "a");
  }

  write(record: MetricsRecord): void {
    // JSON has no NaN/Infinity; write them as strings so a diverged step is still visible.
    const line = JSON.stringify(record, (_k, v) =>
      typeof v === "number" && !Number.isFinite(v) ? String(v) : v,
    );
    const bytes = Buffer.from(`${line}\n`, "utf8");
    writeSync(this.fd, bytes, 0, bytes.length);
  }

  flush(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}

/** Complete lines only; a line cut short by a crash is skipped. */
export function readMetrics(path: string): MetricsRecord[] {
  const text = readFileSync(path, "utf8");
  const complete = text.endsWith("\n") ? text : text.slice(0, text.lastIndexOf("\n") + 1);
  return complete
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(
      (l) =>
        JSON.parse(l, (_k, v) =>
          v === "NaN"
            ? Number.NaN
            : v === "Infinity"
              ? Number.POSITIVE_INFINITY
              : v === "-Infinity"
                ? Number.NEGATIVE_INFINITY
                : v,
        ) as MetricsRecord,
    );
}
