import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ClipTokenizer } from "@lora-studio/engine";
import { trainClipBpe, wordCounts, writeTokenizerFolder } from "../src/demo/bpe-trainer.ts";
import { demoCaptionCorpus } from "../src/demo/scenes.ts";

const FIXTURES = new URL("../../../../shared/fixtures/", import.meta.url);

test("the trained vocabulary has CLIP's layout: byte symbols, byte symbols + </w>, merges, then bos/eos", async () => {
  const real = JSON.parse(await readFile(new URL("clip-tokenizer/vocab.json", FIXTURES), "utf8")) as Record<
    string,
    number
  >;
  const bpe = trainClipBpe(demoCaptionCorpus());
  const ours = [...bpe.vocab];
  // The 512 base symbols come in the same order and with the same ids as in the real CLIP vocabulary.
  const realByteSymbols = Object.entries(real)
    .filter(([, id]) => id < 512)
    .sort((a, b) => a[1] - b[1]);
  assert.deepEqual(ours.slice(0, 512), realByteSymbols);
  // One token per merge, ids in merge order, and the specials last (eos = largest id, as CLIP's 49407).
  for (const [i, [a, b]] of bpe.merges.entries()) assert.equal(bpe.vocab.get(a + b), 512 + i);
  assert.equal(bpe.vocab.get("<|startoftext|>"), bpe.vocab.size - 2);
  assert.equal(bpe.vocab.get("<|endoftext|>"), bpe.vocab.size - 1);
  assert.equal(real["<|endoftext|>"], Object.keys(real).length - 1);
});

test("the engine's CLIP tokenizer reads the written folder and gives every caption word one token", async () => {
  const dir = await mkdtemp(join(tmpdir(), "demo-bpe-"));
  try {
    const corpus = demoCaptionCorpus();
    const bpe = trainClipBpe(corpus);
    await writeTokenizerFolder(dir, bpe);
    const merges = await readFile(join(dir, "merges.txt"), "utf8");
    assert.ok(merges.startsWith("#version: 0.2\n"));
    const tok = await ClipTokenizer.fromDirectory(dir);
    assert.equal(tok.bosId, bpe.vocab.size - 2);
    assert.equal(tok.eosId, bpe.vocab.size - 1);
    for (const word of wordCounts(corpus).keys()) {
      const ids = tok.encode(word, { padding: false }).inputIds;
      assert.deepEqual(
        ids.map((id) => tok.idToToken(id)),
        ["<|startoftext|>", `${word}</w>`, "<|endoftext|>"],
        word,
      );
    }
    const enc = tok.encode("inkwash style, mountains and moon");
    assert.equal(enc.inputIds.length, 77);
    assert.deepEqual(
      enc.inputIds.slice(1, 7).map((id) => tok.idToToken(id)),
      ["inkwash</w>", "style</w>", ",</w>", "mountains</w>", "and</w>", "moon</w>"],
    );
    // Words outside the corpus still tokenize (into smaller pieces, down to single bytes), never to unk.
    const unseen = tok.encode("zebra 42 \u00e9t\u00e9", { padding: false }).inputIds;
    assert.ok(unseen.slice(1, -1).every((id) => id !== tok.unkId));
    assert.equal(
      unseen
        .slice(1, -1)
        .map((id) => tok.idToToken(id))
        .join("")
        .replaceAll("</w>", ""),
      "zebra42\u00c3\u00a9t\u00c3\u00a9",
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("training is deterministic and stops when every word is one symbol", () => {
  const a = trainClipBpe(["low lower lowest", "newer newest wider"]);
  const b = trainClipBpe(["low lower lowest", "newer newest wider"]);
  assert.deepEqual(a.merges, b.merges);
  const words = ["low", "lower", "lowest", "newer", "newest", "wider"];
  for (const w of words) assert.ok(a.vocab.has(`${w}</w>`), w);
  // Classic BPE on this corpus: "e r</w>" (3 occurrences... ) style first merges are the most frequent pairs.
  const first = a.merges[0].join(" ");
  assert.ok(["l o", "e r</w>", "w e", "e s"].includes(first), first);
  assert.equal(trainClipBpe(["low lower lowest"], 2).merges.length, 2);
});
