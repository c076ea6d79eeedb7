/**
 * How engine code tells its host something: "warn" for problems and degraded paths (a provider fallback, weights
 * ORT will copy), the default; "info" for one-time work the user should know about but need not act on (a weight
 * cache being built). Hosts print the two differently (the trainer marks only warnings as "warning:").
 */
export type MessageLevel = "info" | "warn";
export type MessageSink = (message: string, level?: MessageLevel) => void;

/** The default sink: stderr through console.warn, whatever the level. */
export const consoleSink: MessageSink = (message) => console.warn(message);

/** Bytes for a message: GiB from 1 GiB up, else MiB. */
export function bytesText(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}
