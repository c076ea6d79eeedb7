/** Child process for the fp32 cache concurrency test: opens a checkpoint with the cache in a given folder. */
import { openCheckpoint } from "../../src/models/loader/checkpoint.ts";

const [path, dir] = process.argv.slice(2);
const messages: string[] = [];
const ck = await openCheckpoint(path, {
  textEncoderHeads: 4,
  fp32Cache: { dir, onMessage: (m) => messages.push(m) },
});
console.log(`RESULT ${JSON.stringify({ entries: ck.fp32Cache, messages })}`);
await ck.close();
