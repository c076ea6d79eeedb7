// A1111 emphasis parsing: the examples from parse_prompt_attention's docstring, and more cases whose
// expected output was produced by running A1111's prompt_parser.parse_prompt_attention (v1.10) under
// CPython 3.11 - weights are compared exactly, as Python printed them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { isBreakMarker, PromptSyntaxError, parsePromptAttention } from "../src/tokenizer/prompt-weighting.ts";

type Runs = [string, number][];
const parse = (prompt: string): Runs => parsePromptAttention(prompt).map((r) => [r.text, r.weight]);

test("docstring examples of parse_prompt_attention", () => {
  assert.deepEqual(parse("normal text"), [["normal text", 1.0]]);
  assert.deepEqual(parse("an (important) word"), [
    ["an ", 1.0],
    ["important", 1.1],
    [" word", 1.0],
  ]);
  assert.deepEqual(parse("(unbalanced"), [["unbalanced", 1.1]]);
  assert.deepEqual(parse("\\(literal\\]"), [["(literal]", 1.0]]);
  assert.deepEqual(parse("(unnecessary)(parens)"), [["unnecessaryparens", 1.1]]);
  assert.deepEqual(parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."), [
    ["a ", 1.0],
    ["house", 1.5730000000000004],
    [" ", 1.1],
    ["on", 1.0],
    [" a ", 1.1],
    ["hill", 0.55],
    [", sun, ", 1.1],
    ["sky", 1.4641000000000006],
    [".", 1.1],
  ]);
});

// [prompt, A1111's result]
const reference: [string, Runs][] = [
  ["a \\\\ b", [["a \\ b", 1.0]]],
  ["a\\b", [["ab", 1.0]]],
  ["( word : 1.2 )", [[" word ", 1.2]]],
  ["(word:-0.5)", [["word", -0.5]]],
  ["[[word]]", [["word", 0.8264462809917354]]],
  ["a) b]", [["a) b]", 1.0]]],
  ["x :1.2) y", [["x :1.2) y", 1.0]]],
  [
    "((a) b)",
    [
      ["a", 1.2100000000000002],
      [" b", 1.1],
    ],
  ],
  [
    "a BREAK b",
    [
      ["a", 1.0],
      ["BREAK", -1],
      ["b", 1.0],
    ],
  ],
  ["aBREAK b", [["aBREAK b", 1.0]]],
  ["a BREAKING b", [["a BREAKING b", 1.0]]],
  ["a break b", [["a break b", 1.0]]],
  [
    "(a BREAK b)",
    [
      ["a", 1.1],
      ["BREAK", -1.1],
      ["b", 1.1],
    ],
  ],
  [
    "BREAK",
    [
      ["", 1.0],
      ["BREAK", -1],
      ["", 1.0],
    ],
  ],
  [
    "a BREAK BREAK b",
    [
      ["a", 1.0],
      ["BREAK", -1],
      ["", 1.0],
      ["BREAK", -1],
      ["b", 1.0],
    ],
  ],
  ["éBREAK b", [["éBREAK b", 1.0]]],
  [
    "a\u3000BREAK\u3000b",
    [
      ["a", 1.0],
      ["BREAK", -1],
      ["b", 1.0],
    ],
  ],
  ["(a:١.٥)", [["a", 1.5]]],
  ["", [["", 1.0]]],
  [
    "[a (b:1.5) c]",
    [
      ["a ", 0.9090909090909091],
      ["b", 1.3636363636363635],
      [" c", 0.9090909090909091],
    ],
  ],
  [
    "((masterpiece)), [[[blurry]]], (detailed:1.3):2)",
    [
      ["masterpiece", 1.2100000000000002],
      [", ", 1.0],
      ["blurry", 0.7513148009015777],
      [", ", 1.0],
      ["detailed", 1.3],
      [":2)", 1.0],
    ],
  ],
  [
    "(a:1.)(b:.5)",
    [
      ["a", 1.0],
      ["b", 0.5],
    ],
  ],
  ["(([a]))", [["a", 1.1]]],
  [
    "\\((x)\\)",
    [
      ["(", 1.0],
      ["x", 1.1],
      [")", 1.0],
    ],
  ],
  [
    "a:b (c:d) e",
    [
      ["a:b ", 1.0],
      ["c:d", 1.1],
      [" e", 1.0],
    ],
  ],
];

test("escapes, lone backslashes, spaced and signed weights, nesting, stray brackets, BREAK, unicode", () => {
  for (const [prompt, expected] of reference)
    assert.deepEqual(parse(prompt), expected, JSON.stringify(prompt));
});

test("BREAK markers are recognised only at top level", () => {
  assert.deepEqual(parsePromptAttention("a BREAK b").map(isBreakMarker), [false, true, false]);
  assert.deepEqual(parsePromptAttention("(a BREAK b)").map(isBreakMarker), [false, false, false]);
});

test("a weight Python's float() rejects is a PromptSyntaxError naming it (A1111 raises ValueError)", () => {
  for (const prompt of ["(a:1.2.3)", "(a:.)"]) {
    assert.throws(
      () => parsePromptAttention(prompt),
      (e: unknown) => {
        assert.ok(e instanceof PromptSyntaxError);
        assert.equal(e.prompt, prompt);
        assert.match(e.message, /invalid emphasis weight/);
        return true;
      },
    );
  }
});
