import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { readImageHeader } from "../src/datasets/image-header.ts";
import type { Service } from "../src/server/serve.ts";
import { call, type Dirs, makeDirs, start, waitForJob } from "./support/service.ts";
import { sharp } from "./support/sharp.ts";

async function encode(
  format: "png" | "jpeg" | "webp",
  width: number,
  height: number,
  opts: Record<string, unknown> = {},
): Promise<Buffer> {
  const img = sharp({ create: { width, height, channels: 3, background: { r: 200, g: 80, b: 30 } } });
  return img.toFormat(format, opts).toBuffer();
}

/** A 24-bit BMP written by hand (sharp does not encode BMP). */
function bmp(width: number, height: number): Buffer {
  const row = Math.ceil((width * 3) / 4) * 4;
  const b = Buffer.alloc(54 + row * height);
  b.write("BM", 0, "latin1");
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(width, 18);
  b.writeInt32LE(-height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  return b;
}

let dirs: Dirs;
let svc: Service;
before(async () => {
  dirs = await makeDirs();
  svc = await start(dirs, { uploadLimits: { maxFileBytes: 200_000, maxFiles: 10, maxPixels: 2048 * 2048 } });
});
after(() => svc.close());

test("image headers: type and size of PNG, JPEG (with EXIF before SOF), WebP lossy/lossless, BMP", async () => {
  assert.deepEqual(readImageHeader(await encode("png", 37, 21)), { type: "png", width: 37, height: 21 });
  const exif = await sharp(await encode("jpeg", 300, 17))
    .withMetadata({ exif: { IFD0: { Copyright: "x".repeat(2000) } } })
    .jpeg()
    .toBuffer();
  assert.deepEqual(readImageHeader(exif), { type: "jpeg", width: 300, height: 17 });
  assert.deepEqual(readImageHeader(await encode("webp", 65, 33)), { type: "webp", width: 65, height: 33 });
  assert.deepEqual(readImageHeader(await encode("webp", 65, 33, { lossless: true })), {
    type: "webp",
    width: 65,
    height: 33,
  });
  assert.deepEqual(readImageHeader(bmp(5, 3)), { type: "bmp", width: 5, height: 3 });
  assert.equal(readImageHeader(Buffer.from("not an image at all, just text")), null);
  assert.equal(readImageHeader((await encode("png", 4, 4)).subarray(0, 20)), null);
});

async function upload(name: string, files: Array<[string, Buffer]>) {
  const form = new FormData();
  for (const [fname, data] of files) form.append("images", new Blob([new Uint8Array(data)]), fname);
  const res = await fetch(`${svc.url}/api/datasets/${name}/images`, {
    method: "POST",
    body: form,
    headers: { authorization: `Bearer ${svc.token}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: string } };
}

test("upload validates type and limits, lists with sizes, and captions are written to .txt sidecars", async () => {
  assert.equal((await call(svc, "POST", "/api/datasets", { name: "cats" })).status, 201);
  const ok = await upload("cats", [
    ["a.png", await encode("png", 64, 48)],
    ["b.jpg", await encode("jpeg", 32, 32)],
  ]);
  assert.equal(ok.status, 201, ok.body.error);
  const refused: Array<[string, Buffer, number, RegExp]> = [
    ["fake.png", Buffer.from("hello, I am text"), 415, /not a readable/],
    ["wrong.png", await encode("jpeg", 8, 8), 415, /jpeg image, not \.png/],
    ["doc.txt", await encode("png", 8, 8), 415, /only/],
    ["big.png", Buffer.concat([await encode("png", 8, 8), Buffer.alloc(300_000)]), 413, /larger than/],
    ["huge.bmp", bmp(4000, 4000).subarray(0, 60), 413, /pixels/],
    ["../up.png", await encode("png", 8, 8), 400, /'\.\.'|single name/],
  ];
  for (const [fname, data, status, message] of refused) {
    const r = await upload("cats", [[fname, data]]);
    assert.equal(r.status, status, `${fname}: ${r.body.error}`);
    assert.match(r.body.error ?? "", message);
  }
  const unauth = await fetch(`${svc.url}/api/datasets/cats/images`, { method: "POST", body: new FormData() });
  assert.equal(unauth.status, 401);
  const dir = join(dirs.dataDir, "datasets", "cats");
  assert.deepEqual((await readdir(dir)).sort(), ["a.png", "b.jpg"]);

  const cap = await call(svc, "PUT", "/api/datasets/cats/captions/a.png", { caption: "a cat, sitting" });
  assert.equal(cap.body.savedTo, "sidecar");
  assert.equal(await readFile(join(dir, "a.txt"), "utf8"), "a cat, sitting\n");
  const list = await call(svc, "GET", "/api/datasets/cats/images");
  assert.deepEqual(
    (list.body.images as Array<Record<string, unknown>>).map((i) => [
      i.file,
      i.width,
      i.height,
      i.caption,
      i.captionSource,
    ]),
    [
      ["a.png", 64, 48, "a cat, sitting", "sidecar"],
      ["b.jpg", 32, 32, "", "none"],
    ],
  );
  const img = await fetch(`${svc.url}/api/datasets/cats/images/a.png`);
  assert.equal(img.status, 200);
  assert.deepEqual(Buffer.from(await img.arrayBuffer()), await readFile(join(dir, "a.png")));
  assert.equal(
    (await call(svc, "PUT", "/api/datasets/cats/captions/..%2Fa.png", { caption: "x" })).status,
    400,
  );
  assert.equal((await call(svc, "PUT", "/api/datasets/cats/captions/zz.png", { caption: "x" })).status, 404);
});

test("with a metadata.csv, a caption edit rewrites its row and keeps the other columns and rows", async () => {
  await call(svc, "POST", "/api/datasets", { name: "csvset" });
  const dir = join(dirs.dataDir, "datasets", "csvset");
  await writeFile(join(dir, "x.png"), await encode("png", 16, 16));
  await writeFile(join(dir, "y.png"), await encode("png", 16, 16));
  await writeFile(
    join(dir, "metadata.csv"),
    'file_name,text,score\r\nx.png,"old, caption",5\r\ny.png,keep me,3\r\n',
  );
  const r = await call(svc, "PUT", "/api/datasets/csvset/captions/x.png", {
    caption: 'new "quoted", caption',
  });
  assert.equal(r.body.savedTo, "metadata.csv");
  assert.equal(
    await readFile(join(dir, "metadata.csv"), "utf8"),
    'file_name,text,score\r\nx.png,"new ""quoted"", caption",5\r\ny.png,keep me,3\r\n',
  );
  assert.deepEqual(
    (await readdir(dir)).filter((f) => f.endsWith(".txt")),
    [],
  );
});

test("dataset-check runs as a job and reports the trainer's flags", async () => {
  await call(svc, "POST", "/api/datasets", { name: "small" });
  const dir = join(dirs.dataDir, "datasets", "small");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "tiny.png"), await encode("png", 64, 64));
  const r = await call(svc, "POST", "/api/datasets/small/check", { resolution: 512 });
  assert.equal(r.status, 202, r.body.error);
  const job = await waitForJob(svc, r.body.id as string, ["done", "failed"]);
  assert.equal(job.state, "done", String(job.error));
  const rows = (job.result as { rows: Array<{ relPath: string; flags: Array<{ kind: string }> }> }).rows;
  assert.equal(rows.length, 1);
  const kinds = rows[0].flags.map((f) => f.kind);
  assert.ok(kinds.includes("under-resolution"), kinds.join());
  assert.ok(kinds.includes("caption-missing"), kinds.join());
});

test("thumbnails: ?thumb=256 answers a small WebP, EXIF-rotated, made once, remade when the picture changes", async () => {
  await call(svc, "POST", "/api/datasets", { name: "camera" });
  const dir = join(dirs.dataDir, "datasets", "camera");
  // Stored 1200x800 with EXIF orientation 6: shown (and trained) as 800x1200.
  const photo = await sharp(await encode("jpeg", 1200, 800))
    .withMetadata({ orientation: 6 })
    .jpeg()
    .toBuffer();
  await writeFile(join(dir, "photo.jpg"), photo);
  const url = `${svc.url}/api/datasets/camera/images/photo.jpg?thumb=256`;
  const thumbs = join(dirs.dataDir, "thumbs");
  const files = async () =>
    (await Promise.all((await readdir(thumbs)).map((d) => readdir(join(thumbs, d))))).flat();

  const first = await fetch(url);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "image/webp");
  const body = Buffer.from(await first.arrayBuffer());
  const meta = await sharp(body).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ["webp", 171, 256], "fits 256, portrait");
  assert.ok(body.length < photo.length / 4, `thumbnail ${body.length} B vs picture ${photo.length} B`);
  assert.equal((await files()).length, 1);

  assert.deepEqual(Buffer.from(await (await fetch(url)).arrayBuffer()), body, "served from the cache");
  assert.equal((await files()).length, 1);

  await writeFile(join(dir, "photo.jpg"), await encode("jpeg", 300, 300));
  const remade = await sharp(Buffer.from(await (await fetch(url)).arrayBuffer())).metadata();
  assert.deepEqual([remade.width, remade.height], [256, 256], "an edited picture gets a new thumbnail");
  assert.equal((await files()).length, 1, "and the old version's thumbnail is removed");

  const small = await sharp(
    Buffer.from(await (await fetch(`${url.replace("256", "512")}`)).arrayBuffer()),
  ).metadata();
  assert.deepEqual([small.width, small.height], [300, 300], "never enlarged");
  assert.equal((await files()).length, 2, "one per size of the current version");

  const odd = await fetch(`${svc.url}/api/datasets/camera/images/photo.jpg?thumb=300`);
  assert.equal(odd.status, 400);
  assert.match((await odd.json()).error, /thumb must be one of 128, 256, 384, 512/);

  await writeFile(join(dir, "broken.png"), Buffer.from("not a png"));
  const broken = await fetch(`${svc.url}/api/datasets/camera/images/broken.png?thumb=128`);
  assert.equal(broken.status, 422);
  assert.match((await broken.json()).error, /broken\.png as an image/);
});
