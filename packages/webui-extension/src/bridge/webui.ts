/**
 * The service's side of the WebUI bridge: tells an AUTOMATIC1111-style WebUI (A1111, Forge, SD.Next: the
 * same /sdapi/v1 routes) to rescan its Lora folder after a job wrote a LoRA there, so the new card appears
 * without a restart. The WebUI's API must be enabled (`--api`); without it the refresh fails and the
 * message says so.
 */

export class WebuiBridgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebuiBridgeError";
  }
}

export async function refreshLoras(webuiUrl: string, timeoutMs = 10000): Promise<void> {
  const url = new URL("/sdapi/v1/refresh-loras", webuiUrl);
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new WebuiBridgeError(`POST ${url}: ${(err as Error).message} (is the WebUI running with --api?)`);
  }
  if (!res.ok) {
    throw new WebuiBridgeError(
      `POST ${url}: HTTP ${res.status}${res.status === 404 ? " (start the WebUI with --api)" : ""}`,
    );
  }
}

export interface WebuiLora {
  name: string;
  alias: string;
  path: string;
  metadata: Record<string, unknown>;
}

export async function listWebuiLoras(webuiUrl: string): Promise<WebuiLora[]> {
  const url = new URL("/sdapi/v1/loras", webuiUrl);
  const res = await fetch(url, { signal: AbortSignal.timeout(10000) });
  if (!res.ok) throw new WebuiBridgeError(`GET ${url}: HTTP ${res.status}`);
  return (await res.json()) as WebuiLora[];
}
