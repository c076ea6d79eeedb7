/**
 * Progress bar for long CLI steps (cli-progress), with two rules: it is drawn on stderr and only when
 * stderr is a terminal (stdout stays clean for --json and pipes, logs stay free of control codes), and it
 * only appears once a step has run for a second, so quick commands never flash a bar.
 */
import cliProgress from "cli-progress";

export interface Progress {
  /** Reports `done` of `total` units (total may change, e.g. once it becomes known). */
  update(done: number, total?: number): void;
  /** Removes the bar (if drawn). Safe to call more than once. */
  stop(): void;
}

export interface ProgressOptions {
  /** Where to draw; default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** How long a step must run before the bar appears; default 1000 ms. */
  delayMs?: number;
  /** Force off (e.g. --json with --quiet); default on when the stream is a TTY. */
  enabled?: boolean;
}

export function createProgress(label: string, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const enabled = (options.enabled ?? true) && stream.isTTY === true;
  const delayMs = options.delayMs ?? 1000;
  const started = Date.now();
  let bar: cliProgress.SingleBar | null = null;
  let total = 0;
  let done = 0;
  let stopped = false;

  const show = () => {
    if (bar !== null || stopped || !enabled) return;
    bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} [{bar}] {percentage}% | {value}/{total} | {duration_formatted}`,
        clearOnComplete: true,
        hideCursor: true,
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(total, 1), done);
  };
  // Without this timer a step that reports rarely would show its bar only at its next report.
  const timer = enabled ? setTimeout(show, delayMs) : null;
  timer?.unref();

  return {
    update(value: number, newTotal?: number) {
      done = value;
      if (newTotal !== undefined) total = newTotal;
      if (bar === null && enabled && Date.now() - started >= delayMs) show();
      if (bar !== null) {
        if (newTotal !== undefined) bar.setTotal(Math.max(total, 1));
        bar.update(done);
      }
    },
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      if (bar !== null) {
        bar.stop();
        bar = null;
      }
    },
  };
}

/** Runs `work` with a progress bar that is always removed afterwards, even when `work` throws. */
export async function withProgress<T>(
  label: string,
  work: (progress: Progress) => Promise<T>,
  options?: ProgressOptions,
): Promise<T> {
  const progress = createProgress(label, options);
  try {
    return await work(progress);
  } finally {
    progress.stop();
  }
}
