import { Worker } from "node:worker_threads";

console.log("execArgv", process.execArgv);
const variants: Record<string, string[]> = {
  inherit: process.execArgv,
  importTsx: ["--import", import.meta.resolve("tsx")],
  importTsxEsm: ["--import", import.meta.resolve("tsx/esm")],
};
for (const [k, argv] of Object.entries(variants)) {
  await new Promise<void>((res) => {
    const w = new Worker(new URL("./w.ts", import.meta.url), { execArgv: argv });
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
