/**
 * An AUTOMATIC1111-shaped WebUI for tests: a real HTTP server on loopback that serves
 *  - a page with A1111's structure: <gradio-app> root, #tabs > .tab-nav buttons, one .tabitem panel per tab
 *    (#tab_txt2img, #tab_img2img, #tab_lora_studio), our on_ui_tabs gr.HTML mount point inside
 *    #tab_lora_studio, the extension's javascript/*.js as <script> tags in <head> and its style.css as a
 *    <link>, the way A1111's ui_gradio_extensions.py injects them (URLs "file=extensions/<name>/..."),
 *    plus A1111's script.js globals: gradioApp() and onUiLoaded(callback), called once the UI is in place;
 *  - GET /sdapi/v1/loras -> [{ name, alias, path, metadata }] from its last scan of models/Lora, and
 *    POST /sdapi/v1/refresh-loras, which rescans (A1111 only sees new files after a refresh).
 * The mount point's data-service / data-token attributes are what extension/scripts/lora_studio.py writes.
 */
import { readdir, readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, resolve, sep } from "node:path";
import { openSafetensors } from "@lora-studio/prompt-lora";

export interface HostLora {
  name: string;
  alias: string;
  path: string;
  metadata: Record<string, string>;
}

export interface A1111Host {
  url: string;
  loraDir: string;
  refreshCount: () => number;
  close(): Promise<void>;
}

async function scan(dir: string): Promise<HostLora[]> {
  const out: HostLora[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if ([".safetensors", ".pt", ".ckpt"].includes(extname(e.name).toLowerCase())) {
        const name = e.name.slice(0, -extname(e.name).length);
        let metadata: Record<string, string> = {};
        if (extname(e.name).toLowerCase() === ".safetensors") {
          const f = await openSafetensors(p);
          metadata = { ...f.metadata };
          await f.close();
        }
        out.push({ name, alias: metadata.ss_output_name ?? name, path: p, metadata });
      }
    }
  };
  await walk(dir);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const escapeAttr = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;");

function page(extName: string, scripts: string[], mountAttrs: Record<string, string>): string {
  const attrs = Object.entries(mountAttrs)
    .map(([k, v]) => ` data-${k}="${escapeAttr(v)}"`)
    .join("");
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Stable Diffusion</title>
<script>
  // A1111 script.js essentials
  function gradioApp() { const e = document.getElementsByTagName('gradio-app'); const el = e.length ? e[0] : document; return el.shadowRoot || el; }
  var uiLoadedCallbacks = [];
  function onUiLoaded(cb) { uiLoadedCallbacks.push(cb); }
  function executeCallbacks(q) { for (const cb of q) { try { cb(); } catch (e) { console.error('error running callback', cb, e); } } }
</script>
${scripts.map((s) => `<script type="text/javascript" src="file=extensions/${extName}/javascript/${s}"></script>`).join("\n")}
<link rel="stylesheet" property="stylesheet" href="file=extensions/${extName}/style.css">
</head><body>
<gradio-app><div class="gradio-container">
  <div id="tabs" class="tabs gradio-tabs">
    <div class="tab-nav">
      <button class="selected">txt2img</button><button>img2img</button><button>LoRA Studio</button>
    </div>
    <div id="tab_txt2img" class="tabitem"><div id="txt2img_prompt"><textarea aria-label="Prompt"></textarea></div></div>
    <div id="tab_img2img" class="tabitem" style="display:none"></div>
    <div id="tab_lora_studio" class="tabitem" style="display:none"><div class="prose"><div id="lora-studio-root"${attrs}></div></div></div>
  </div>
</div></gradio-app>
<script>
  // gradio's tab switching
  const panels = ['tab_txt2img', 'tab_img2img', 'tab_lora_studio'];
  document.querySelectorAll('#tabs > .tab-nav > button').forEach((b, i) => b.addEventListener('click', () => {
    document.querySelectorAll('#tabs > .tab-nav > button').forEach((x) => x.classList.toggle('selected', x === b));
    panels.forEach((id, j) => { document.getElementById(id).style.display = i === j ? '' : 'none'; });
  }));
  // A1111 calls onUiLoaded callbacks once gradio has rendered the UI (after the scripts ran).
  setTimeout(() => executeCallbacks(uiLoadedCallbacks), 50);
</script>
</body></html>`;
}

export async function startA1111Host(options: {
  webuiDir: string;
  /** The built extension folder (dist/webui-extension layout). */
  extensionDir: string;
  extensionName?: string;
  /** data-* attributes of the mount point (service, token), as lora_studio.py renders them. */
  mountAttrs?: Record<string, string>;
  theme?: "dark" | "light";
}): Promise<A1111Host> {
  const loraDir = join(options.webuiDir, "models", "Lora");
  const extName = options.extensionName ?? "lora-studio";
  const extDir = resolve(options.extensionDir);
  let loras = await scan(loraDir);
  let refreshes = 0;
  const scripts = (await readdir(join(extDir, "javascript"))).filter((f) => f.endsWith(".js")).sort();
  const server: Server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? "/", "http://host");
      if (req.method === "GET" && url.pathname === "/") {
        let html = page(extName, scripts, options.mountAttrs ?? {});
        if (options.theme === "dark") html = html.replace("<body>", '<body class="dark">');
        res.writeHead(200, { "content-type": "text/html" }).end(html);
      } else if (req.method === "GET" && url.pathname.startsWith(`/file=extensions/${extName}/`)) {
        const rel = decodeURIComponent(url.pathname.slice(`/file=extensions/${extName}/`.length));
        const abs = resolve(extDir, rel);
        if (!abs.startsWith(extDir + sep)) return void res.writeHead(403).end();
        const type = abs.endsWith(".js")
          ? "text/javascript"
          : abs.endsWith(".css")
            ? "text/css"
            : "application/octet-stream";
        res.writeHead(200, { "content-type": type }).end(await readFile(abs));
      } else if (req.method === "GET" && url.pathname === "/sdapi/v1/loras") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(loras));
      } else if (req.method === "POST" && url.pathname === "/sdapi/v1/refresh-loras") {
        loras = await scan(loraDir);
        refreshes++;
        res.writeHead(200, { "content-type": "application/json" }).end("null");
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    loraDir,
    refreshCount: () => refreshes,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
