// Properties of parsePrompt on random prompts built from the characters that matter to the token syntax.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parsePrompt } from "../src/prompt/parse.ts";

const pieces = [
  "<",
  ">",
  ":",
  "=",
  "lora",
  "lyco",
  "hypernet",
  "foo",
  "x",
  " ",
  "0.5",
  "-1",
  "1e-1",
  "te",
  "unet",
  "dyn",
  "4",
  "\n",
  "#",
  "[",
  "]",
  "AND",
  "BREAK",
  "é",
  "😀",
];
const prompt = fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((a) => a.join(""));

test("never throws; tokens + cleaned prompt account for every character; columns point at the tokens", () => {
  fc.assert(
    fc.property(prompt, (text) => {
      const r = parsePrompt(text, { stripComments: false });
      const tokens = [
        ...r.networks.map((n) => [n.token, n.column] as const),
        ...r.errors.map((e) => [e.token, e.column] as const),
        ...r.unknown.map((u) => [u.token, u.column] as const),
      ];
      const cps = [...text];
      let removed = 0;
      for (const [token, column] of tokens) {
        assert.equal(cps.slice(column - 1, column - 1 + [...token].length).join(""), token);
        removed += token.length;
      }
      assert.equal(r.prompt.length + removed, text.length);
    }),
    { numRuns: 500 },
  );
});

test("a network token parsed on its own gives the same network", () => {
  fc.assert(
    fc.property(prompt, (text) => {
      for (const n of parsePrompt(text, { stripComments: false }).networks) {
        const again = parsePrompt(n.token, { stripComments: false }).networks[0];
        assert.deepEqual({ ...again, column: n.column }, n);
      }
    }),
    { numRuns: 300 },
  );
});
