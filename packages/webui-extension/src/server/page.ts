/**
 * The standalone page at `/`. The token is embedded only when both the TCP peer and the Host header are
 * loopback (a same-machine, same-origin page load); anywhere else the page asks for the token, which the
 * user copies from `<dataDir>/token`.
 */
import type { Request } from "express";
import { isLoopbackAddress, isLoopbackHost } from "./origin.ts";

const escapeJson = (v: unknown) => JSON.stringify(v).replaceAll("<", "\\u003c");

export function pageHtml(req: Request, token: string): string {
  const embed = isLoopbackAddress(req.socket.remoteAddress) && isLoopbackHost(req.headers.host);
  const config = { service: "", token: embed ? token : null, standalone: true };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>LoRA Studio</title><link rel="stylesheet" href="/ui/style.css">
<script>window.__LORA_STUDIO__ = ${escapeJson(config)};</script>
<script src="/ui/lora-studio.js" defer></script></head>
<body class="lora-studio-standalone"><div id="lora-studio-root"></div></body></html>`;
}
