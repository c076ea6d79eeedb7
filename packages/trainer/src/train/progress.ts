/**
 * Console progress for `pnpm train`: a cli-progress bar on stderr when it is a terminal (step, epoch, loss and
 * its moving average, lr, it/s, ETA), otherwise one log line every `every` steps so CI logs and redirected
 * output stay readable.
 */
import cliProgress from "cli-progress";
import type { TrainEvent, TrainEventHandler } from "./events.ts";

export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s % 60).padStart(2, "0")}s`;
}

/** "1.00e-4", or "1.00e-4 te 5.00e-5" when the text encoder is trained too. */
function lrText(e: Extract<TrainEvent, { type: "step" }>): string {
  const unet = e.lr.toExponential(2);
  return e.lrTextEncoder === undefined ? unet : `${unet} te ${e.lrTextEncoder.toExponential(2)}`;
}

export function stepLine(e: Extract<TrainEvent, { type: "step" }>): string {
  return (
    `step ${e.step}/${e.totalSteps} epoch ${e.epoch} loss ${e.loss.toFixed(4)} avg ${e.lossAverage.toFixed(4)} ` +
    `lr ${lrText(e)} ${e.itPerSec.toFixed(2)} it/s ETA ${formatEta(e.etaSeconds)}` +
    (e.evalLoss !== undefined ? ` eval ${e.evalLoss.toFixed(4)}` : "")
  );
}

export function consoleProgress(
  opts: { tty?: boolean; every?: number; write?: (line: string) => void } = {},
): TrainEventHandler & { stop(): void } {
  const tty = opts.tty ?? process.stderr.isTTY === true;
  const every = opts.every ?? 10;
  const write = opts.write ?? ((l: string) => process.stderr.write(`${l}\n`));
  let bar: cliProgress.SingleBar | undefined;
  const handler = (e: TrainEvent) => {
    switch (e.type) {
      case "step":
        if (tty) {
          if (!bar) {
            bar = new cliProgress.SingleBar(
              {
                format:
                  "{bar} {value}/{total} | epoch {epoch} | loss {loss} (avg {avg}) | lr {lr} | {itps} it/s | ETA {eta}",
                stream: process.stderr,
                hideCursor: true,
              },
              cliProgress.Presets.shades_classic,
            );
            bar.start(e.totalSteps, e.step - 1);
          }
          bar.update(e.step, {
            epoch: e.epoch,
            loss: e.loss.toFixed(4),
            avg: e.lossAverage.toFixed(4),
            lr: lrText(e),
            itps: e.itPerSec.toFixed(2),
            eta: formatEta(e.etaSeconds),
          });
        } else if (e.step % every === 0 || e.step === e.totalSteps || e.step === 1) write(stepLine(e));
        break;
      case "log":
      case "error":
      case "saved":
      case "sample":
      case "plan":
      case "done": {
        const text =
          e.type === "log"
            ? `${e.level === "warn" ? "warning: " : ""}${e.message}`
            : e.type === "error"
              ? `error: ${e.message}`
              : e.type === "saved"
                ? `saved step ${e.step}: ${e.loraPath}`
                : e.type === "sample"
                  ? `samples at step ${e.step}: ${e.path}`
                  : e.type === "plan"
                    ? e.text
                    : `${e.status} at step ${e.step}${e.loraPath ? `: ${e.loraPath}` : ""}`;
        if (bar) bar.stop();
        bar = undefined;
        write(text);
        break;
      }
    }
  };
  return Object.assign(handler, {
    stop() {
      bar?.stop();
    },
  });
}
