import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Service } from "../src/server/serve.ts";
import { call, type Dirs, FIXTURE_LORA, makeDirs, start } from "./support/service.ts";
import { sharp } from "./support/sharp.ts";

let dirs: Dirs;
let svc: Service;

/** Every file under a folder, relative, sorted: the proof that a refused request changed nothing. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(rel + e.name);
    }
  };
  await walk(dir, "");
  return out.sort();
}

before(async () => {
  dirs = await makeDirs();
  // a folder outside the Lora folder with a LoRA in it, reachable through a symlink inside
  const outside = join(dirs.root, "outside");
  await mkdir(outside);
  await copyFile(FIXTURE_LORA, join(outside, "secret.safetensors"));
  await symlink(outside, join(dirs.loraDir, "escape"));
  await symlink(join(outside, "secret.safetensors"), join(dirs.loraDir, "linked.safetensors"));
  svc = await start(dirs);
});
after(() => svc.close());

test("the listing has the fixture LoRAs with hashes, family, token and relative paths", async () => {
  const r = await call(svc, "GET", "/api/lora");
  assert.equal(r.status, 200);
  const cards = r.body.cards as Array<Record<string, unknown>>;
  const tiny = cards.find((c) => c.path === "style/tiny.safetensors");
  assert.ok(tiny, JSON.stringify(cards.map((c) => c.path)));
  const sha = createHash("sha256")
    .update(await readFile(FIXTURE_LORA))
    .digest("hex");
  assert.equal((tiny.hashes as { sha256: string }).sha256, sha);
  assert.equal(tiny.folder, "style");
  assert.equal(tiny.token, "<lora:tiny:1>");
  assert.ok((tiny.moduleCount as number) > 0);
});

test("path traversal attempts are refused with 400 and change nothing", async () => {
  const before = await tree(dirs.root);
  const long = "a".repeat(300);
  const attempts: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ["POST", "/api/lora/rename", { path: "../outside/secret.safetensors", name: "x" }, /'\.\.'/],
    ["POST", "/api/lora/rename", { path: "style/../../outside/secret.safetensors", name: "x" }, /'\.\.'/],
    ["POST", "/api/lora/rename", { path: "tiny-b.safetensors", name: "../escaped" }, /single name|'\.\.'/],
    ["POST", "/api/lora/rename", { path: "/etc/passwd", name: "x" }, /absolute/],
    ["POST", "/api/lora/rename", { path: join(dirs.loraDir, "tiny-b.safetensors"), name: "x" }, /absolute/],
    ["POST", "/api/lora/rename", { path: "tiny-b.safetensors\u0000.png", name: "x" }, /NUL/],
    ["POST", "/api/lora/rename", { path: "tiny-b.safetensors", name: "x\u0000y" }, /NUL/],
    ["POST", "/api/lora/rename", { path: "tiny-b.safetensors", name: long }, /longer than 255/],
    ["POST", "/api/lora/rename", { path: `${"d/".repeat(600)}x.safetensors`, name: "x" }, /longer than 1024/],
    ["POST", "/api/lora/rename", { path: "escape/secret.safetensors", name: "x" }, /outside the folder/],
    ["POST", "/api/lora/rename", { path: "linked.safetensors", name: "x" }, /outside the folder/],
    ["POST", "/api/lora/move", { path: "tiny-b.safetensors", folder: "../up" }, /'\.\.'/],
    ["POST", "/api/lora/move", { path: "tiny-b.safetensors", folder: "escape" }, /outside the folder/],
    ["POST", "/api/lora/move", { path: "tiny-b.safetensors", folder: "/tmp" }, /absolute/],
    ["POST", "/api/lora/delete", { path: "escape/secret.safetensors" }, /outside the folder/],
    ["POST", "/api/lora/delete", { path: "..\\outside\\secret.safetensors" }, /backslash/],
    [
      "PUT",
      "/api/lora/user-metadata",
      { path: "escape/secret.safetensors", metadata: { notes: "x" } },
      /outside the folder/,
    ],
    [
      "POST",
      "/api/lora/merge",
      { inputs: [{ path: "escape/secret.safetensors" }], output: "m" },
      /outside the folder/,
    ],
    [
      "POST",
      "/api/lora/merge",
      { inputs: [{ path: "tiny-b.safetensors" }], output: "escape/m" },
      /outside the folder/,
    ],
    ["POST", "/api/lora/merge", { inputs: [{ path: "tiny-b.safetensors" }], output: "../m" }, /'\.\.'/],
    ["POST", "/api/datasets", { name: "../x" }, /'\.\.'|single name/],
    ["POST", "/api/datasets", { name: "a/b" }, /single name/],
  ];
  for (const [method, path, body, message] of attempts) {
    const r = await call(svc, method, path, body);
    assert.equal(
      r.status,
      400,
      `${method} ${path} ${JSON.stringify(body).slice(0, 80)} -> ${r.status} ${r.body.error}`,
    );
    assert.match(r.body.error ?? "", message, `${JSON.stringify(body).slice(0, 80)}`);
  }
  for (const q of ["../outside/x.png", "escape/x.png", "/etc/x.png", "a\u0000.png"]) {
    for (const thumb of ["", "&thumb=128"]) {
      const r = await call(svc, "GET", `/api/lora/preview?path=${encodeURIComponent(q)}${thumb}`);
      assert.equal(r.status, 400, `${q}${thumb}`);
    }
  }
  assert.deepEqual(await tree(dirs.root), before);
});

test("user metadata is written in the WebUI's JSON shape and merged with existing keys", async () => {
  await writeFile(join(dirs.loraDir, "tiny-b.json"), JSON.stringify({ "sd version": "SD1", custom: 7 }));
  const r = await call(svc, "PUT", "/api/lora/user-metadata", {
    path: "tiny-b.safetensors",
    metadata: { "activation text": "tinystyle", "preferred weight": 0.8, notes: "n" },
  });
  assert.equal(r.status, 200, r.body.error);
  const saved = JSON.parse(await readFile(join(dirs.loraDir, "tiny-b.json"), "utf8"));
  assert.deepEqual(saved, {
    "sd version": "SD1",
    custom: 7,
    "activation text": "tinystyle",
    "preferred weight": 0.8,
    notes: "n",
  });
  const bad = await call(svc, "PUT", "/api/lora/user-metadata", {
    path: "tiny-b.safetensors",
    metadata: { "preferred weight": "x" },
  });
  assert.equal(bad.status, 400);
  const list = await call(svc, "GET", "/api/lora");
  const card = (list.body.cards as Array<Record<string, unknown>>).find((c) => c.name === "tiny-b");
  assert.equal(card?.token, "<lora:tiny-b:0.8>");
});

test("rename and move carry the sidecars; delete goes to the trash and undo restores", async () => {
  await writeFile(join(dirs.loraDir, "tiny-b.preview.png"), "png");
  let r = await call(svc, "POST", "/api/lora/rename", { path: "tiny-b.safetensors", name: "renamed" });
  assert.equal(r.status, 200, r.body.error);
  assert.equal(r.body.path, "renamed.safetensors");
  const files = await readdir(dirs.loraDir);
  for (const f of ["renamed.safetensors", "renamed.json", "renamed.preview.png"])
    assert.ok(files.includes(f), f);
  assert.ok(!files.includes("tiny-b.safetensors"));
  // taken name: 409
  r = await call(svc, "POST", "/api/lora/rename", { path: "renamed.safetensors", name: "renamed" });
  assert.equal(r.status, 409);

  r = await call(svc, "POST", "/api/lora/move", { path: "renamed.safetensors", folder: "chars/new" });
  assert.equal(r.status, 200, r.body.error);
  assert.deepEqual((await readdir(join(dirs.loraDir, "chars", "new"))).sort(), [
    "renamed.json",
    "renamed.preview.png",
    "renamed.safetensors",
  ]);

  const del = await call(svc, "POST", "/api/lora/delete", { path: "chars/new/renamed.safetensors" });
  assert.equal(del.status, 200, del.body.error);
  assert.deepEqual(await readdir(join(dirs.loraDir, "chars", "new")), []);
  const trashed = await readdir(join(dirs.dataDir, "trash", del.body.trashId as string));
  assert.equal(trashed.length, 4);
  const undo = await call(svc, "POST", "/api/lora/undo-delete", { trashId: del.body.trashId });
  assert.equal(undo.status, 200, undo.body.error);
  const back = await readFile(join(dirs.loraDir, "chars", "new", "renamed.safetensors"));
  assert.deepEqual(back, await readFile(FIXTURE_LORA));
  assert.equal((await call(svc, "POST", "/api/lora/undo-delete", { trashId: del.body.trashId })).status, 404);
  await assert.rejects(stat(join(dirs.dataDir, "trash", del.body.trashId as string)));
});

test("a Lora card's preview comes as a thumbnail when asked (the Library asks for 384 px)", async () => {
  const big = await sharp({
    create: { width: 900, height: 1200, channels: 3, background: { r: 9, g: 9, b: 9 } },
  })
    .png()
    .toBuffer();
  await mkdir(join(dirs.loraDir, "thumbs-test"), { recursive: true });
  await writeFile(join(dirs.loraDir, "thumbs-test", "p.preview.png"), big);
  const res = await fetch(
    `${svc.url}/api/lora/preview?path=${encodeURIComponent("thumbs-test/p.preview.png")}&thumb=384`,
  );
  assert.equal(res.status, 200);
  const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ["webp", 288, 384]);
  const full = await fetch(
    `${svc.url}/api/lora/preview?path=${encodeURIComponent("thumbs-test/p.preview.png")}`,
  );
  assert.deepEqual(Buffer.from(await full.arrayBuffer()), big, "without thumb: the file itself");
});
