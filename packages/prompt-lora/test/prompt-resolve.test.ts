// Name resolution rules of A1111's Lora extension (list_available_networks / load_networks), on listings
// built by hand so each expectation can be traced to one rule.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { LibraryEntry } from "../src/library/types.ts";
import { parsePrompt } from "../src/prompt/parse.ts";
import { indexLibrary, lookupNetwork, resolveNetworks } from "../src/prompt/resolve.ts";

function entry(path: string, alias?: string, supported = true): LibraryEntry {
  const file = path.split("/").pop()!;
  const dot = file.lastIndexOf(".");
  const name = file.slice(0, dot);
  return {
    name,
    alias: alias ?? name,
    path,
    folder: "",
    extension: file.slice(dot),
    size: 1,
    mtimeMs: 1,
    supported,
    reason: supported ? null : "pickle",
    format: "kohya",
    family: "sd1",
    familySource: "keys",
    ranks: [4],
    alphas: [4],
    moduleCount: 1,
    components: ["unet"],
    kinds: ["lora"],
    unknownKeyCount: 0,
    unknownKeysSample: [],
    hashes: null,
    shortHash: `${name}-hash`.slice(0, 12),
    metadata: {},
    userMetadata: null,
    userMetadataError: null,
    preview: null,
  };
}

test("a name matches the file stem; an alias (ss_output_name) matches too", () => {
  const lib = [entry("/l/ink_v3.safetensors", "ink"), entry("/l/sub/pastel.safetensors")];
  const r = resolveNetworks(parsePrompt("<lora:ink:0.7> <lora:ink_v3:0.5> <lora:pastel>"), lib);
  assert.deepEqual(
    r.networks.map((n) => n.entry?.path),
    ["/l/ink_v3.safetensors", "/l/ink_v3.safetensors", "/l/sub/pastel.safetensors"],
  );
  assert.deepEqual(r.missing, []);
  assert.equal(r.notFoundMessage, null);
  // one file named two ways is loaded once per name, each with its own multipliers
  assert.deepEqual(
    r.networks.map((n) => n.te),
    [0.7, 0.5, 1],
  );
  assert.ok(r.warnings.some((w) => w.includes('"ink" and "ink_v3"')));
});

test("the subfolder is not part of the name", () => {
  const lib = [entry("/l/styles/anime/ink.safetensors")];
  assert.equal(lookupNetwork(indexLibrary(lib), "ink")?.path, "/l/styles/anime/ink.safetensors");
  assert.equal(lookupNetwork(indexLibrary(lib), "styles/anime/ink"), undefined);
  assert.equal(lookupNetwork(indexLibrary(lib), "anime/ink"), undefined);
});

test("an alias shared by two files resolves by filename only", () => {
  const lib = [
    entry("/l/a.safetensors", "shared"),
    entry("/l/b.safetensors", "shared"),
    entry("/l/shared.safetensors", "other"),
  ];
  const index = indexLibrary(lib);
  assert.ok(index.forbidden.has("shared"));
  assert.equal(lookupNetwork(index, "shared")?.path, "/l/shared.safetensors");
  assert.equal(lookupNetwork(index, "other")?.path, "/l/shared.safetensors");
  const withoutFile = indexLibrary(lib.slice(0, 2));
  assert.equal(lookupNetwork(withoutFile, "shared"), undefined);
  assert.equal(lookupNetwork(withoutFile, "a")?.path, "/l/a.safetensors");
  assert.equal(lookupNetwork(withoutFile, "b")?.path, "/l/b.safetensors");
});

test("an alias equal to another file's name is forbidden too (lookup goes to that file)", () => {
  const lib = [entry("/l/ink.safetensors"), entry("/l/ink_v2.safetensors", "ink")];
  assert.equal(lookupNetwork(indexLibrary(lib), "ink")?.path, "/l/ink.safetensors");
  // forbidden names are matched case-insensitively but looked up exactly
  assert.equal(lookupNetwork(indexLibrary(lib), "INK"), undefined);
});

test("'none' is always forbidden as an alias", () => {
  const lib = [entry("/l/x.safetensors", "none")];
  assert.equal(lookupNetwork(indexLibrary(lib), "none"), undefined);
  assert.equal(lookupNetwork(indexLibrary(lib), "x")?.path, "/l/x.safetensors");
});

test("lookups are case-sensitive and keep spaces; a hint is given for stray spaces", () => {
  const lib = [entry("/l/Ink.safetensors"), entry("/l/my lora.safetensors")];
  const r = resolveNetworks(parsePrompt("<lora:ink> <lora: Ink :0.5> <lora:my lora:0.4>"), lib);
  assert.deepEqual(r.missing, ["ink", " Ink "]);
  assert.equal(r.networks[2].entry?.path, "/l/my lora.safetensors");
  assert.ok(r.warnings.some((w) => w.includes('"Ink" exists')));
});

test("unknown names are reported as 'Lora not found: a, b' while the others still apply", () => {
  const lib = [entry("/l/ink.safetensors")];
  const r = resolveNetworks(parsePrompt("<lora:a> <lora:ink:0.6> <lyco:b:0.2> <lora:a:0.1>"), lib);
  assert.deepEqual(r.missing, ["a", "b"]);
  assert.equal(r.notFoundMessage, "Lora not found: a, b");
  const applied = r.networks.filter((n) => n.entry !== null);
  assert.deepEqual(
    applied.map((n) => [n.name, n.te]),
    [["ink", 0.6]],
  );
});

test("the same LoRA named twice: applied twice, both with the last token's multipliers (A1111)", () => {
  const lib = [entry("/l/x.safetensors")];
  const r = resolveNetworks(parsePrompt("<lora:x:0.5:0.4> cat <lora:x:0.3>"), lib);
  assert.equal(r.networks.length, 2);
  for (const n of r.networks) {
    assert.equal(n.entry?.path, "/l/x.safetensors");
    assert.equal(n.te, 0.3);
    assert.equal(n.unet, 0.3);
  }
  assert.deepEqual(r.networks[0].written, { te: 0.5, unet: 0.4, dyn: null });
  assert.ok(r.warnings.some((w) => w.includes("named 2 times")));
});

test("two files with the same stem: the last listed wins, with a warning", () => {
  const lib = [entry("/l/a/ink.safetensors"), entry("/l/b/ink.safetensors")];
  const r = resolveNetworks(parsePrompt("<lora:ink>"), lib);
  assert.equal(r.networks[0].entry?.path, "/l/b/ink.safetensors");
  assert.ok(r.warnings.some((w) => w.includes("2 files are named")));
});

test("pickle files resolve but are reported unusable; hypernetworks pass through", () => {
  const lib = [entry("/l/old.pt", undefined, false)];
  const r = resolveNetworks(parsePrompt("<lora:old:0.5> <hypernet:h:0.4>"), lib);
  assert.equal(r.networks[0].entry?.path, "/l/old.pt");
  assert.deepEqual(r.unusable, [{ name: "old", path: "/l/old.pt", reason: "pickle" }]);
  assert.equal(r.networks[1].type, "hypernet");
  assert.equal(r.networks[1].entry, null);
  assert.deepEqual(r.missing, []);
});
