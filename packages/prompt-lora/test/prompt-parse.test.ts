// Cases derived by hand from A1111's rules (modules/extra_networks.py parse_prompt, the Lora extension's
// activate(), extra_networks_hypernet.py); each expectation is what those functions would compute.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parsePythonFloat, parsePythonInt } from "../src/prompt/numbers.ts";
import { type PromptNetwork, parsePrompt } from "../src/prompt/parse.ts";

type Expect = Partial<Pick<PromptNetwork, "type" | "tokenType" | "name" | "te" | "unet" | "dyn" | "column">>;

function only(text: string): PromptNetwork {
  const r = parsePrompt(text);
  assert.deepEqual(r.errors, [], `errors for ${text}`);
  assert.equal(r.networks.length, 1, `one network in ${text}`);
  return r.networks[0];
}

function check(text: string, expected: Expect): void {
  const n = only(text);
  for (const [k, v] of Object.entries(expected)) {
    assert.deepEqual(n[k as keyof PromptNetwork], v, `${k} of ${text}`);
  }
}

const cases: Array<[string, Expect]> = [
  ["<lora:x>", { name: "x", te: 1, unet: 1, dyn: null }],
  ["<lora:x:0.8>", { name: "x", te: 0.8, unet: 0.8, dyn: null }],
  ["<lora:x:0.8:0.3>", { te: 0.8, unet: 0.3 }],
  ["<lora:x:0.8:0.3:16>", { te: 0.8, unet: 0.3, dyn: 16 }],
  ["<lora:x:1e-1>", { te: 0.1, unet: 0.1 }],
  ["<lora:x:2E+1>", { te: 20, unet: 20 }],
  ["<lora:x:-0.5:0.3>", { te: -0.5, unet: 0.3 }],
  ["<lora:x:-1>", { te: -1, unet: -1 }],
  ["<lora:x:+.5>", { te: 0.5 }],
  ["<lora:x:1.>", { te: 1 }],
  ["<lora:x:1_0>", { te: 10 }], // Python float() accepts digit-group underscores
  ["<lora:x: 0.8 >", { te: 0.8, unet: 0.8 }], // float() strips surrounding whitespace
  ["<lora:x:0.8:te=0>", { te: 0, unet: 0 }], // named te overrides, unet defaults to the resolved te
  ["<lora:x:0.8:te=0:0.4>", { te: 0, unet: 0.4 }], // named items do not count as positional
  ["<lora:x:te=0.2>", { te: 0.2, unet: 0.2 }],
  ["<lora:x:unet=0.3>", { te: 1, unet: 0.3 }],
  ["<lora:x:te=0.2:unet=0.9>", { te: 0.2, unet: 0.9 }],
  ["<lora:x:unet=0.9:te=0.2>", { te: 0.2, unet: 0.9 }], // named order does not matter
  ["<lora:x:0.5:0.6:unet=0.7>", { te: 0.5, unet: 0.7 }],
  ["<lora:x:dyn=8>", { te: 1, unet: 1, dyn: 8 }],
  ["<lora:x:1:1:4:dyn=8>", { dyn: 8 }], // named dyn overrides positional
  ["<lora:x:te=0.1:te=0.9>", { te: 0.9 }], // a Python dict keeps the last value
  ["<lora:x:dyn= 12 >", { dyn: 12 }],
  ["<lora:x:1:1:08>", { dyn: 8 }], // int("08") is 8
  ["<lora:a=b:1>", { name: "1", te: 1, unet: 1 }], // "a=b" is named, so the name is the next positional
  ["<lora:a=b=c:0.5>", { name: "a=b=c", te: 0.5 }], // split("=", 2) gives 3 parts: positional
  ["<lora: spaced name :0.5>", { name: " spaced name ", te: 0.5 }], // name kept verbatim
  ["<lora:my lora v2:0.6>", { name: "my lora v2", te: 0.6 }],
  ["<lora:x:0.8:0.3:16:99>", { te: 0.8, unet: 0.3, dyn: 16 }],
  ["<lyco:x:0.4>", { type: "lora", tokenType: "lyco", name: "x", te: 0.4, unet: 0.4 }],
  ["<lyco:x:1:unet=0.5:dyn=13>", { te: 1, unet: 0.5, dyn: 13 }],
  ["<lyco:x:dyn=13:te=1:unet=0.5>", { te: 1, unet: 0.5, dyn: 13 }],
  ["<hypernet:h:0.7>", { type: "hypernet", name: "h", te: 0.7, unet: 0.7 }],
  ["<hypernet:h>", { type: "hypernet", name: "h", te: 1 }],
  ["<hypernet:a=b:-0.5>", { type: "hypernet", name: "a=b", te: -0.5 }], // hypernet reads raw items
  ["<lora:Ünïcode_名前:0.5>", { name: "Ünïcode_名前", te: 0.5 }],
  ["<lora:x:0.5>>", { name: "x", te: 0.5 }],
];

for (const [text, expected] of cases) {
  test(`parsePrompt ${text}`, () => check(text, expected));
}

test("every token is removed from the text, known type or not, and nothing else is touched", () => {
  const r = parsePrompt("a cat, <lora:ink:0.7>, <foo:bar> on a hill, <hypernet:h:1>.");
  assert.equal(r.prompt, "a cat, ,  on a hill, .");
  assert.deepEqual(r.unknown, [{ type: "foo", token: "<foo:bar>", column: 24 }]);
  assert.deepEqual(
    r.networks.map((n) => [n.type, n.name, n.column]),
    [
      ["lora", "ink", 8],
      ["hypernet", "h", 45],
    ],
  );
});

test("types are case sensitive: <LORA:x> is an unknown type", () => {
  const r = parsePrompt("<LORA:x:1>");
  assert.equal(r.networks.length, 0);
  assert.equal(r.unknown[0].type, "LORA");
  assert.equal(r.prompt, "");
});

test("text that is not a token stays: <lora>, <:x>, <lora:>, < lora:x>, <lo-ra:x>", () => {
  const text = "<lora> <:x> <lora:> < lora:x> <lo-ra:x>";
  const r = parsePrompt(text);
  assert.equal(r.prompt, text);
  assert.equal(r.networks.length + r.unknown.length + r.errors.length, 0);
});

test("a '>' ends the token and nested brackets are not special", () => {
  // `[^>]+` from the first "<lora:" runs to the first ">": items "a<lora", "b", "0.5", so te = float("b").
  const r = parsePrompt("<lora:a<lora:b:0.5>:1>");
  assert.equal(r.networks.length, 0);
  assert.equal(r.errors[0].token, "<lora:a<lora:b:0.5>");
  assert.match(r.errors[0].message, /"b" is not a number/);
  assert.equal(r.prompt, ":1>");
  const s = parsePrompt("((<lora:a:0.5>)) [<lora:b>]");
  assert.deepEqual(
    s.networks.map((n) => n.name),
    ["a", "b"],
  );
  assert.equal(s.prompt, "(()) []");
});

test("removal is one pass, like re.sub: text that becomes a token after a removal stays", () => {
  const r = parsePrompt("<lo<lora:x>ra:y>");
  assert.deepEqual(
    r.networks.map((n) => n.name),
    ["x"],
  );
  assert.equal(r.prompt, "<lora:y>");
});

test("tokens inside AND, BREAK and [a:b:10] scheduling are extracted from the whole text", () => {
  const r = parsePrompt(
    "[cat <lora:a:0.5>:dog <lora:b:0.25>:10] AND sky <lyco:c> BREAK (sea <lora:d:2>:1.2)",
  );
  assert.deepEqual(
    r.networks.map((n) => [n.name, n.te]),
    [
      ["a", 0.5],
      ["b", 0.25],
      ["d", 2],
      ["c", 1],
    ],
  );
  assert.equal(r.prompt, "[cat :dog :10] AND sky  BREAK (sea :1.2)");
});

test("tokens over several lines; [^>] crosses newlines", () => {
  const r = parsePrompt("line one <lora:a:0.5\n>\nline two <lora:b>");
  assert.deepEqual(
    r.networks.map((n) => [n.name, n.te]),
    [
      ["a", 0.5],
      ["b", 1],
    ],
  );
  assert.equal(r.prompt, "line one \nline two ");
});

test("activation order: per type name in order of first appearance, lyco merged into lora's list", () => {
  const r = parsePrompt("<lora:b> <lyco:a> <hypernet:h> <lora:c>");
  assert.deepEqual(
    r.networks.map((n) => n.name),
    ["b", "c", "a", "h"],
  );
  const s = parsePrompt("<hypernet:h> <lyco:a> <lora:b>");
  assert.deepEqual(
    s.networks.map((n) => n.name),
    ["h", "a", "b"],
  );
});

test("the same LoRA named twice is kept twice here (resolve applies A1111's duplicate rule)", () => {
  const r = parsePrompt("<lora:x:0.5> <lora:x:0.3>");
  assert.deepEqual(
    r.networks.map((n) => [n.name, n.te]),
    [
      ["x", 0.5],
      ["x", 0.3],
    ],
  );
});

test("a malformed number is an error naming the token and its column; other tokens still apply", () => {
  const r = parsePrompt("masterpiece <lora:x:abc> <lora:y:0.5>");
  assert.deepEqual(
    r.networks.map((n) => n.name),
    ["y"],
  );
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0].token, "<lora:x:abc>");
  assert.equal(r.errors[0].column, 13);
  assert.match(r.errors[0].message, /te multiplier .*"abc" is not a number/);
  assert.equal(r.prompt, "masterpiece  ");
  assert.ok(r.warnings.some((w) => w.includes("A1111 would apply no LoRA")));
});

const badTokens: Array<[string, RegExp]> = [
  ["<lora:x:>", /te multiplier.*"" is not a number/],
  ["<lora:x:0.5:abc>", /unet multiplier.*"abc"/],
  ["<lora:x:1:1:1.5>", /dyn.*"1.5" is not an integer/],
  ["<lora:x:te=>", /te=.*"" is not a number/],
  ["<lora:x:unet=zero>", /unet=.*"zero"/],
  ["<lora:x:dyn=4.0>", /dyn=.*not an integer/],
  ["<lora:x:0x10>", /"0x10" is not a number/],
  ["<lora:x:1__0>", /"1__0" is not a number/],
  ["<lora:x:1,5>", /"1,5" is not a number/],
  ["<lora:x:inf>", /not a finite number/],
  ["<lora:x:nan>", /not a finite number/],
  ["<lora:x:1e999>", /out of range/],
  ["<lora:te=1>", /no LoRA name/],
  ["<hypernet:h:strong>", /multiplier.*"strong"/],
];

for (const [token, message] of badTokens) {
  test(`error for ${token}`, () => {
    const r = parsePrompt(`a ${token} b`);
    assert.equal(r.networks.length, 0);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0].token, token);
    assert.equal(r.errors[0].column, 3);
    assert.match(r.errors[0].message, message);
    assert.equal(r.prompt, "a  b");
  });
}

test("columns count code points (an emoji is one column) in the original text", () => {
  const r = parsePrompt("😀😀 <lora:x:bad>");
  assert.equal(r.errors[0].column, 4);
});

test("comments are stripped first, as A1111's default-on Comments script does", () => {
  const r = parsePrompt("# header <lora:a>\ncat <lora:b:0.5> # tail <lora:c>\n<lora:d:bad>");
  assert.deepEqual(
    r.networks.map((n) => n.name),
    ["b"],
  );
  assert.equal(r.errors[0].token, "<lora:d:bad>");
  // column is in the original text: the token starts at index 51.
  assert.equal(r.errors[0].column, 52);
  assert.equal(r.prompt, "\ncat  \n");
  const off = parsePrompt("# <lora:a>", { stripComments: false });
  assert.deepEqual(
    off.networks.map((n) => n.name),
    ["a"],
  );
  assert.equal(off.prompt, "# ");
});

test("unknown named arguments and extra positionals are reported as warnings", () => {
  const r = parsePrompt("<lora:x:1:1:4:5:lbw=OUTD>");
  assert.equal(r.networks[0].dyn, 4);
  assert.ok(r.warnings.some((w) => w.includes('"lbw" is ignored')));
  assert.ok(r.warnings.some((w) => w.includes("after the 4th")));
});

test("Python float()/int() grammar", () => {
  const floats: Array<[string, number | null]> = [
    ["1", 1],
    ["-0.5", -0.5],
    ["  3.25\t", 3.25],
    [".5", 0.5],
    ["5.", 5],
    ["1e3", 1000],
    ["1E-3", 0.001],
    ["1_000.000_1", 1000.0001],
    ["", null],
    [".", null],
    ["e5", null],
    ["1e", null],
    ["_1", null],
    ["1_", null],
    ["1_.5", null],
    ["--1", null],
    ["1.5.2", null],
    ["0b1", null],
  ];
  for (const [s, v] of floats) {
    const r = parsePythonFloat(s);
    if (v === null) assert.equal(r.ok, false, s);
    else assert.deepEqual(r, { ok: true, value: v }, s);
  }
  assert.deepEqual(parsePythonInt(" -12 "), { ok: true, value: -12 });
  assert.deepEqual(parsePythonInt("1_2"), { ok: true, value: 12 });
  assert.equal(parsePythonInt("1e2").ok, false);
  assert.equal(parsePythonInt("12.0").ok, false);
});
