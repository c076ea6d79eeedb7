/**
 * How engine code tells its host something: "warn" for problems and degraded paths (a provider fallback, weights
 * ORT will copy), the default; "info" for one-time work the user should know about but need not act on (a weight
 * cache being built for a real checkpoint); "debug" for the same work when it is too small to notice (the tiny
 * demo model's caches), which hosts leave out unless LORA_STUDIO_VERBOSE=1, so a quick start is not buried under
 * cache notes. Hosts print info and warn differently (the trainer marks only warnings as "warning:").
 */
export type MessageLevel = "debug" | "info" | "warn";
export type MessageSink = (message: string, level?: MessageLevel) => void;

/** Cache work on less than this many bytes is "debug": it takes well under a second. */
export const NOTABLE_BYTES = 64 * 2 ** 20;

/** "info" for cache work on a notable amount of data, else "debug". */
export function sizeLevel(bytes: number): MessageLevel {
  return bytes >= NOTABLE_BYTES ? "info" : "debug";
}

/** Whether a host should show a message of this level (debug only with LORA_STUDIO_VERBOSE=1). */
export function shown(level: MessageLevel | undefined): boolean {
  return level !== "debug" || /^(1|true|yes|on)$/i.test(process.env.LORA_STUDIO_VERBOSE ?? "");
}

/** The default sink: stderr through console.warn, debug left out (see `shown`). */
export const consoleSink: MessageSink = (message, level) => {
  if (shown(level)) console.warn(message);
};

/** Bytes for a message: GiB from 1 GiB up, else MiB. */
export function bytesText(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}
