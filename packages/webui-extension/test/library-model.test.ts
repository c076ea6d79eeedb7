/** What the Library tab derives from a list entry (ui/library-model.ts): tags, training facts, search, merge. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type LoraCard,
  matchesFilter,
  mergeAction,
  startingWeight,
  tagCounts,
  topTags,
  trainingFacts,
} from "../ui/library-model.ts";

function card(over: Partial<LoraCard> = {}): LoraCard {
  return {
    name: "ink",
    alias: "inkwash_v2",
    path: "styles/ink.safetensors",
    folder: "styles",
    family: "sd1",
    ranks: [16],
    moduleCount: 128,
    size: 1 << 20,
    shortHash: "a1d072e25bbd",
    supported: true,
    reason: null,
    preview: null,
    token: "<lora:inkwash_v2:1>",
    metadata: {},
    userMetadata: null,
    ...over,
  };
}

test("tag counts sum over dataset folders, trim kohya's leading spaces, and ignore junk", () => {
  const metadata = {
    ss_tag_frequency: {
      "10_ink": { inkwash: 12, " mountain": 5, "": 3, bad: "x" },
      "2_moon": { inkwash: 2, moon: 4 },
      broken: null,
    },
  };
  assert.deepEqual(
    [...tagCounts(metadata)],
    [
      ["inkwash", 14],
      ["mountain", 5],
      ["moon", 4],
    ],
  );
  assert.deepEqual(topTags(metadata, 2), [
    ["inkwash", 14],
    ["mountain", 5],
  ]);
  assert.deepEqual(topTags({ ss_tag_frequency: "not decoded" }, 5), []);
  assert.deepEqual(topTags({}, 5), []);
});

test("training facts come in reading order, leave out absent and 'None' values, and date either way", () => {
  const facts = trainingFacts({
    ss_output_name: "ink",
    ss_sd_model_name: "v1-5-pruned-emaonly.safetensors",
    ss_network_module: "networks.lora",
    ss_network_dim: 16,
    ss_network_alpha: "8.0",
    ss_resolution: "(512, 512)",
    ss_steps: "600",
    ss_learning_rate: "None",
    ss_training_started_at: "1700000000.5",
  });
  assert.deepEqual(facts, [
    ["title", "ink"],
    ["base model", "v1-5-pruned-emaonly.safetensors"],
    ["network", "networks.lora"],
    ["dim / alpha", "16 / 8.0"],
    ["resolution", "(512, 512)"],
    ["steps", "600"],
    ["trained", "2023-11-14"],
  ]);
  assert.deepEqual(trainingFacts({ "modelspec.title": "Ink", "modelspec.date": "2026-12-07T10:00:00" }), [
    ["title", "Ink"],
    ["trained", "2026-12-07"],
  ]);
  assert.deepEqual(trainingFacts({}), []);
});

test("search: every word must match name, alias, folder, activation text or a tag; family narrows", () => {
  const c = card({
    metadata: { ss_tag_frequency: { "1_x": { "brush stroke": 3 } } },
    userMetadata: { raw: { "activation text": "sumi-e style" } },
  });
  const f = (query: string, family = "") => matchesFilter(c, { query, family });
  assert.ok(f(""));
  assert.ok(f("INK"));
  assert.ok(f("inkwash_v2"));
  assert.ok(f("styles ink"));
  assert.ok(f("sumi-e"));
  assert.ok(f("brush"));
  assert.ok(!f("ink watercolor"), "all words must match");
  assert.ok(f("", "sd1"));
  assert.ok(!f("ink", "sdxl"));
});

test("the merge button names what the job will do, and starts from the preferred weight", () => {
  assert.equal(mergeAction(1, null), "Convert");
  assert.equal(mergeAction(1, 8), "Resize");
  assert.equal(mergeAction(3, null), "Merge");
  assert.equal(mergeAction(2, 32), "Merge");
  assert.equal(startingWeight(card()), 1);
  assert.equal(startingWeight(card({ userMetadata: { raw: { "preferred weight": 0.7 } } })), 0.7);
  // The WebUI stores 0 for "no preference".
  assert.equal(startingWeight(card({ userMetadata: { raw: { "preferred weight": 0 } } })), 1);
});
