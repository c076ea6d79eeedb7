/**
 * The service's access token: 32 random bytes (hex), generated at first start and kept in
 * `<dataDir>/token` with mode 0600 so other users of the machine cannot read it. Compared in constant time.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const TOKEN_FILE = "token";

export async function loadOrCreateToken(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, TOKEN_FILE);
  try {
    const t = (await readFile(path, "utf8")).trim();
    if (/^[0-9a-f]{64}$/.test(t)) {
      await chmod(path, 0o600);
      return t;
    }
  } catch {
    // first start
  }
  const token = randomBytes(32).toString("hex");
  // "wx" is not used: a malformed token file is replaced on purpose.
  await writeFile(path, `${token}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
  return token;
}

export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token of a request: `Authorization: Bearer T` or `X-LoRA-Studio-Token: T`. */
export function tokenFromHeaders(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === "string" && auth.startsWith("Bearer ")) return auth.slice(7).trim();
  const x = headers["x-lora-studio-token"];
  return typeof x === "string" ? x.trim() : undefined;
}
