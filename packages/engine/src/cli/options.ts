/** Shared pieces of the engine CLIs: strict number parsing for commander, error output, cwd handling. */
import { InvalidArgumentError } from "commander";

export function intOption(name: string, min = Number.MIN_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(
        `${name} must be an integer${min > Number.MIN_SAFE_INTEGER ? ` >= ${min}` : ""}`,
      );
    return n;
  };
}

export function floatOption(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
}

/** `pnpm <script>` runs in the repository root; paths the user typed are relative to INIT_CWD. */
export function useCallerCwd(): void {
  if (process.env.INIT_CWD && process.env.npm_lifecycle_event) process.chdir(process.env.INIT_CWD);
}

/** One line on stderr (or {"error": ...} on stdout with --json) and exit code 1. */
export function reportFailure(err: unknown, json: boolean): void {
  const e = err as Error;
  const message = e?.message ?? String(err);
  if (json) process.stdout.write(`${JSON.stringify({ error: message, name: e?.name })}\n`);
  else process.stderr.write(`error: ${message}\n`);
  process.exitCode = 1;
}
