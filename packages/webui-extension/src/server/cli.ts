/**
 * `pnpm serve [--webui-dir PATH] [--webui-url URL] [--port 7870] [--listen] [--host H] [--data-dir DIR]
 *  [--lora-subfolder NAME] [--tokenizer DIR] [--tagger DIR...] [--base-model PATH]`
 * With --webui-dir the WebUI's models/Lora is managed and hot-loaded; without it the service runs standalone
 * with its own Lora folder under the data folder.
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { serve } from "./serve.ts";

const program = new Command("serve")
  .description("lora-studio service: training tab and models/Lora management for a WebUI, or standalone")
  .option("--webui-dir <path>", "the WebUI's folder (its models/Lora is managed)")
  .option("--webui-url <url>", "the WebUI's URL (refresh-loras, allowed origin)", "http://127.0.0.1:7860")
  .option("--port <n>", "port", "7870")
  .option("--host <host>", "address to bind (default 127.0.0.1; 0.0.0.0 with --listen)")
  .option("--listen", "bind beyond loopback (the token is still required)")
  .option(
    "--data-dir <path>",
    "data folder (token, jobs, datasets)",
    process.env.LORA_STUDIO_HOME ?? join(homedir(), ".lora-studio"),
  )
  .option(
    "--concurrency <n>",
    "model jobs (training, txt2img, auto-label) at once; merges, dataset checks and indexing run beside them",
    "1",
  )
  .option("--lora-subfolder <name>", "where training jobs put their LoRAs inside models/Lora", "lora-studio")
  .option("--tokenizer <dir>", "CLIP tokenizer folder for single-file base models")
  .option(
    "--tagger <dir...>",
    "auto-label tagger folder(s) with model.onnx + selected_tags.csv (default: $LORA_STUDIO_TAGGER)",
  )
  .option("--base-model <path>", "txt2img base model (default: $LORA_STUDIO_BASE_MODEL, else the demo base)");

program.parse();
const o = program.opts<{
  webuiDir?: string;
  webuiUrl: string;
  port: string;
  host?: string;
  listen?: boolean;
  dataDir: string;
  concurrency: string;
  loraSubfolder: string;
  tokenizer?: string;
  tagger?: string[];
  baseModel?: string;
}>();
const dataDir = resolve(o.dataDir);
const webuiDir = o.webuiDir === undefined ? undefined : resolve(o.webuiDir);
const service = await serve({
  port: Number(o.port),
  host: o.host ?? (o.listen ? "0.0.0.0" : "127.0.0.1"),
  listen: o.listen === true,
  dataDir,
  loraDir: webuiDir === undefined ? join(dataDir, "models", "Lora") : join(webuiDir, "models", "Lora"),
  webuiUrl: webuiDir === undefined ? undefined : o.webuiUrl,
  concurrency: Number(o.concurrency),
  loraSubfolder: o.loraSubfolder,
  clipTokenizerDir: o.tokenizer === undefined ? undefined : resolve(o.tokenizer),
  taggerDirs: (o.tagger ?? (process.env.LORA_STUDIO_TAGGER ? [process.env.LORA_STUDIO_TAGGER] : [])).map(
    (d) => resolve(d),
  ),
  baseModel: o.baseModel === undefined ? undefined : resolve(o.baseModel),
});
console.log(`lora-studio service on ${service.url}  (token in ${join(dataDir, "token")})`);
console.log(`Lora folder: ${service.library.loraDir}`);
const stop = () => void service.close().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
