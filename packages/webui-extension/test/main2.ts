import { Worker } from "node:worker_threads";

const entry = new URL("./w.ts", import.meta.url).href;
const api = import.meta.resolve("tsx/esm/api");
const variants: Record<string, string> = {
  register: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`,
  tsImport: `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}))`,
};
for (const [k, code] of Object.entries(variants)) {
  await new Promise<void>((res) => {
    const w = new Worker(code, { eval: true, execArgv: [] });
    w.on("message", (m) => {
      console.log(k, "ok", m);
      w.terminate();
      res();
    });
    w.on("error", (e) => {
      console.log(k, "ERR", e.message);
      res();
    });
  });
}
