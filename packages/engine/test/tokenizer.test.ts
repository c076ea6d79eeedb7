// CLIP BPE tokenizer: exact ids against the reference fixture (HF CLIPTokenizer + ftfy), for both copies of
// the tokenizer files; text cleaning, pre-tokenization and BPE edge cases against independent expectations.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { openSafetensors } from "@lora-studio/prompt-lora";
import fc from "fast-check";
import { bytesToUnicode, ClipTokenizer } from "../src/tokenizer/clip-bpe.ts";
import { TokenizerError } from "../src/tokenizer/tokenizer-files.ts";

const fixtures = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
const referenceDir = join(fixtures, "tiny-sd1/reference");
const tokenizerDirs = {
  "clip-tokenizer": join(fixtures, "clip-tokenizer"),
  "tiny-sd1 diffusers root": join(fixtures, "tiny-sd1/diffusers"),
  "tiny-sd1 diffusers tokenizer/": join(fixtures, "tiny-sd1/diffusers/tokenizer"),
};

interface FixturePrompt {
  text: string;
  index: number;
  ids_full: number[];
  ids_padded: number[];
  tokens_full: string[];
}

const sidecar = JSON.parse(await readFile(join(referenceDir, "01_tokenizer.json"), "utf8"));
const prompts: FixturePrompt[] = sidecar.params.prompts;
const tokenizer = await ClipTokenizer.fromDirectory(tokenizerDirs["clip-tokenizer"]);

async function readI64(path: string): Promise<Map<string, { shape: number[]; values: number[] }>> {
  const file = await openSafetensors(path);
  try {
    const out = new Map<string, { shape: number[]; values: number[] }>();
    for (const [name, info] of file.tensors) {
      assert.equal(info.dtype, "I64", `${name} dtype`);
      const raw = await file.readRaw(name);
      const values = Array.from(new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8), Number);
      out.set(name, { shape: info.shape, values });
    }
    return out;
  } finally {
    await file.close();
  }
}

test("fixture: ids, padding, attention mask and tokens equal HF's exactly, for every tokenizer copy", async () => {
  const tensors = await readI64(join(referenceDir, "01_tokenizer.safetensors"));
  const inputIds = tensors.get("input_ids")!;
  const mask = tensors.get("attention_mask")!;
  assert.deepEqual(inputIds.shape, [prompts.length, 77]);
  for (const [label, dir] of Object.entries(tokenizerDirs)) {
    const tok = await ClipTokenizer.fromDirectory(dir);
    assert.equal(tok.bosId, sidecar.params.bos_token_id);
    assert.equal(tok.eosId, sidecar.params.eos_token_id);
    assert.equal(tok.padId, sidecar.params.pad_token_id);
    for (const p of prompts) {
      const what = `${label}, prompt ${p.index} ${JSON.stringify(p.text.slice(0, 40))}`;
      const enc = tok.encode(p.text);
      assert.deepEqual(enc.inputIds, inputIds.values.slice(p.index * 77, (p.index + 1) * 77), what);
      assert.deepEqual(enc.inputIds, p.ids_padded, what);
      assert.deepEqual(enc.attentionMask, mask.values.slice(p.index * 77, (p.index + 1) * 77), what);
      const full = tok.encode(p.text, { truncation: false, padding: false }).inputIds;
      assert.deepEqual(full, tensors.get(`input_ids_full_${p.index}`)!.values, what);
      assert.deepEqual(full, p.ids_full, what);
      assert.deepEqual(["<|startoftext|>", ...tok.tokenize(p.text), "<|endoftext|>"], p.tokens_full, what);
    }
  }
});

const ids = (tokens: string[]) => tokens.map((t) => tokenizer.vocab.get(t)!);

test("numbers are split one digit at a time", () => {
  assert.deepEqual(tokenizer.tokenize("12345"), ["1</w>", "2</w>", "3</w>", "4</w>", "5</w>"]);
  assert.deepEqual(tokenizer.tokenize("v1.5 at 768px"), [
    ...["v</w>", "1</w>", ".</w>", "5</w>", "at</w>", "7</w>", "6</w>", "8</w>"],
    ...tokenizer.tokenize("px"),
  ]);
});

test("apostrophe contractions are their own tokens, curly quotes are straightened first", () => {
  assert.deepEqual(tokenizer.tokenize("it's we're they've i'm you'll he'd don't"), [
    ...["it</w>", "'s</w>", "we</w>", "'re</w>", "they</w>", "'ve</w>", "i</w>", "'m</w>"],
    ...["you</w>", "'ll</w>", "he</w>", "'d</w>", "don</w>", "'t</w>"],
  ]);
  assert.deepEqual(tokenizer.encodeText("IT\u2019S DON\u2018T"), tokenizer.encodeText("it's don't"));
  assert.deepEqual(tokenizer.encodeText("\u201cquoted\u201d"), tokenizer.encodeText('"quoted"'));
});

test("whitespace of every kind collapses; case is folded", () => {
  const reference = tokenizer.encodeText("a photo of cats");
  assert.deepEqual(tokenizer.encodeText("  A\tPHOTO\n\r\n of\u00a0\u3000cats \u2003 "), reference);
  assert.deepEqual(tokenizer.encodeText("a\u2028photo\u2029of\u000ccats"), reference);
  // U+0085 is whitespace to Python, but ftfy's C1 fix runs first and reads it as Windows-1252's ellipsis.
  assert.deepEqual(tokenizer.encodeText("a\u0085b"), tokenizer.encodeText("a\u2026b"));
  // U+001C is whitespace to Python but a control character to ftfy, which removes it first.
  assert.deepEqual(tokenizer.encodeText("of\x1ccats"), tokenizer.encodeText("ofcats"));
  assert.deepEqual(tokenizer.encode(" \t\n ").inputIds, tokenizer.encode("").inputIds);
});

test("unicode: NFC, fullwidth forms, ligatures, controls, HTML entities (unless the text looks like HTML)", () => {
  assert.deepEqual(tokenizer.encodeText("Cafe\u0301"), tokenizer.encodeText("Café"));
  assert.deepEqual(tokenizer.tokenize("\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33"), [
    "loud</w>",
    "noises</w>",
  ]);
  assert.deepEqual(tokenizer.encodeText("\ufb02u\ufb03est"), tokenizer.encodeText("fluffiest"));
  assert.deepEqual(tokenizer.encodeText("\ufeffcat\u200b\x07"), tokenizer.encodeText("cat\u200b"));
  assert.deepEqual(
    tokenizer.encodeText("fish &amp; chips &EACUTE; &#233; &#x41;"),
    tokenizer.encodeText("fish & chips É é a"),
  );
  assert.deepEqual(tokenizer.encodeText("&amp;amp;"), tokenizer.encodeText("&"), "fixed until stable");
  // C1 controls read as Windows-1252 (then uncurled); numeric references as Python's html.unescape.
  assert.deepEqual(
    tokenizer.encodeText("&#128;5 \x93quoted\x94 &#1;x"),
    tokenizer.encodeText('\u20ac5 "quoted" x'),
  );
  // A '<' means "this may be HTML": ftfy then leaves entities alone. Unknown names are never decoded.
  assert.deepEqual(
    tokenizer.encodeText("<b>fish &amp; chips</b>"),
    tokenizer.encodeText("<b>fish & amp ; chips</b>"),
  );
  assert.deepEqual(tokenizer.encodeText("&notanentity;"), tokenizer.encodeText("& notanentity ;"));
});

test("emoji and other multi-byte text are byte-level tokens that decode back exactly", () => {
  assert.deepEqual(tokenizer.tokenize("😀"), ["ðŁĺĢ</w>"]);
  for (const text of [
    "🦩 flamingo 🏳️‍🌈",
    "日本語のテキスト",
    "Ελληνικά κείμενα",
    "🧪🧪🧪 lab",
    "flag \u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
  ]) {
    const encoded = tokenizer.encodeText(text);
    assert.ok(
      encoded.every((id) => id >= 0 && id < 49406),
      text,
    );
    assert.equal(tokenizer.decode(encoded), text.normalize("NFC").toLowerCase().replace(/\s+/g, " "), text);
  }
});

test("the literal special-token text is the special token; other text around it is tokenized apart", () => {
  assert.deepEqual(tokenizer.encodeText("cat<|endoftext|>dog"), [2368, 49407, 1929]);
  assert.deepEqual(tokenizer.encodeText("<|startoftext|>"), [49406]);
});

// An independent, deliberately naive BPE (string joins, rescans the whole word per merge) to check the
// tokenizer's merge loop and cache on words it has never seen.
const mergeRanks = new Map<string, number>();
(await readFile(join(tokenizerDirs["clip-tokenizer"], "merges.txt"), "utf8"))
  .split("\n")
  .slice(1)
  .forEach((line, rank) => {
    if (line.trim() !== "" && !mergeRanks.has(line.trim())) mergeRanks.set(line.trim(), rank);
  });
const byteChars = bytesToUnicode();
function naiveBpe(word: string): string[] {
  const chars = Array.from(new TextEncoder().encode(word), (b) => byteChars[b]);
  let parts = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
  for (;;) {
    let best: number | undefined;
    let at = -1;
    parts.forEach((p, i) => {
      const r = i + 1 < parts.length ? mergeRanks.get(`${p} ${parts[i + 1]}`) : undefined;
      if (r !== undefined && (best === undefined || r < best)) [best, at] = [r, i];
    });
    if (best === undefined) return parts;
    const [a, b] = [parts[at], parts[at + 1]];
    const next: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (parts[i] === a && parts[i + 1] === b) next.push(a + parts[++i]);
      else next.push(parts[i]);
    }
    parts = next;
  }
}

test("very long words: merges agree with a naive BPE, and nothing mergeable is left", () => {
  for (const word of ["a".repeat(300), "supercalifragilisticexpialidocious".repeat(8), "xyzzy".repeat(60)]) {
    const tokens = tokenizer.tokenize(word);
    assert.deepEqual(tokens, naiveBpe(word));
    for (let i = 0; i + 1 < tokens.length; i++) assert.ok(!mergeRanks.has(`${tokens[i]} ${tokens[i + 1]}`));
    assert.equal(tokenizer.decode(tokenizer.encodeText(word)), word);
  }
});

test("property: random lowercase words tokenize as the naive BPE does, cached or not", () => {
  const uncached = new ClipTokenizer(
    {
      vocab: tokenizer.vocab as Map<string, number>,
      merges: [...mergeRanks.keys()].map((k) => k.split(" ") as [string, string]),
      special: tokenizer.special,
    },
    { cacheLimit: 0 },
  );
  fc.assert(
    fc.property(fc.stringMatching(/^[a-zé]{1,24}$/), (word) => {
      const expected = ids(naiveBpe(word.normalize("NFC")));
      assert.deepEqual(tokenizer.encodeText(word), expected);
      assert.deepEqual(uncached.encodeText(word), expected);
    }),
    { numRuns: 300, seed: 42 },
  );
  assert.equal(uncached.cacheSize, 0);
});

test("truncation keeps bos + 75 + eos; maxLength and padding options", () => {
  const long = prompts.find((p) => p.ids_full.length > 77)!;
  const enc = tokenizer.encode(long.text, { maxLength: 10 });
  assert.deepEqual(enc.inputIds, [...long.ids_full.slice(0, 9), 49407]);
  const unpadded = tokenizer.encode("a cat", { padding: false });
  assert.deepEqual(unpadded, { inputIds: [49406, 320, 2368, 49407], attentionMask: [1, 1, 1, 1] });
});

test("SD2-style tokenizer: pad token '!' (id 0) from special_tokens_map pads, and splits like HF does", async () => {
  const dir = await mkdtemp(join(tmpdir(), "clip-sd2-"));
  try {
    for (const f of ["vocab.json", "merges.txt"])
      await symlink(join(tokenizerDirs["clip-tokenizer"], f), join(dir, f));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ pad_token: "<|endoftext|>" }));
    await writeFile(
      join(dir, "special_tokens_map.json"),
      JSON.stringify({ pad_token: "!", bos_token: { content: "<|startoftext|>" } }),
    );
    const sd2 = await ClipTokenizer.fromDirectory(dir);
    assert.equal(sd2.padId, 0);
    const enc = sd2.encode("a cat");
    assert.deepEqual(enc.inputIds.slice(0, 5), [49406, 320, 2368, 49407, 0]);
    assert.equal(enc.inputIds.length, 77);
    assert.ok(enc.inputIds.slice(4).every((id) => id === 0));
    assert.deepEqual(enc.attentionMask.slice(0, 5), [1, 1, 1, 1, 0]);
    // diffusers issue #4153: HF's SD2 tokenizer gives "! !! !!!" as six pad tokens.
    assert.deepEqual(sd2.encode("! !! !!!").inputIds.slice(0, 9), [49406, 0, 0, 0, 0, 0, 0, 49407, 0]);
    assert.deepEqual(tokenizer.encodeText("! !! !!!"), [256, 748, 995], "SD1 keeps them as text");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("loading errors name the missing or broken file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "clip-bad-"));
  try {
    await assert.rejects(ClipTokenizer.fromDirectory(dir), (e: unknown) => {
      assert.ok(e instanceof TokenizerError);
      assert.equal(e.code, "missing_file");
      assert.equal(e.file, join(dir, "vocab.json"));
      return true;
    });
    await writeFile(join(dir, "model_index.json"), "{}");
    await assert.rejects(ClipTokenizer.fromDirectory(dir), {
      code: "missing_file",
      file: join(dir, "tokenizer/vocab.json"),
    });
    await writeFile(join(dir, "vocab.json"), '{"a": 0}');
    await assert.rejects(ClipTokenizer.fromDirectory(dir), {
      code: "missing_file",
      file: join(dir, "merges.txt"),
    });
    await writeFile(join(dir, "merges.txt"), "#version: 0.2\na\n");
    await assert.rejects(ClipTokenizer.fromDirectory(dir), {
      code: "invalid_merges",
      file: join(dir, "merges.txt"),
    });
    await writeFile(join(dir, "merges.txt"), "#version: 0.2\na b\n");
    await assert.rejects(ClipTokenizer.fromDirectory(dir), (e: unknown) => {
      assert.ok(e instanceof TokenizerError && e.code === "unknown_special_token");
      assert.match(e.message, /<\|startoftext\|>/);
      return true;
    });
    await writeFile(join(dir, "vocab.json"), "{not json");
    await assert.rejects(ClipTokenizer.fromDirectory(dir), {
      code: "invalid_json",
      file: join(dir, "vocab.json"),
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
