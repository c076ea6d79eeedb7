import assert from "node:assert/strict";
import { test } from "node:test";
import { BucketPlanner, fixedResolutionAssignment, makeBucketResolutions } from "../src/dataset/buckets.ts";

const settings = {
  resolution: [512, 512] as [number, number],
  minReso: 256,
  maxReso: 1024,
  step: 64,
  noUpscale: false,
};

test("kohya's bucket list for 512 px, 256..1024, step 64 (hand-computed)", () => {
  // width w -> height min(1024, floor(floor(262144 / w) / 64) * 64), plus transposes and the 512 square.
  const expected = [
    [256, 832],
    [256, 896],
    [256, 960],
    [256, 1024],
    [320, 704],
    [320, 768],
    [384, 640],
    [448, 576],
    [512, 512],
    [576, 448],
    [640, 384],
    [704, 320],
    [768, 320],
    [832, 256],
    [896, 256],
    [960, 256],
    [1024, 256],
  ];
  assert.deepEqual(makeBucketResolutions([512, 512], 256, 1024, 64), expected);
});

test("every bucket is a multiple of the step with area at most resolution squared", () => {
  for (const res of [256, 512, 640, 768]) {
    for (const [w, h] of makeBucketResolutions([res, res], 256, 2048, 64)) {
      assert.equal(w % 64, 0);
      assert.equal(h % 64, 0);
      assert.ok(w * h <= res * res, `${w}x${h} exceeds ${res}^2`);
      assert.ok(w >= 256 && h >= 256 && w <= 2048 && h <= 2048);
    }
  }
  // 768: the square is floor(768/64)*64 = 768 and 1024 wide gets floor(589824/1024/64)*64 = 576.
  const b768 = makeBucketResolutions([768, 768], 256, 1024, 64);
  assert.ok(b768.some(([w, h]) => w === 768 && h === 768));
  assert.ok(b768.some(([w, h]) => w === 1024 && h === 576));
});

test("assignment: nearest aspect ratio, scale to cover rounding half up, center crop", () => {
  const p = new BucketPlanner(settings);
  // 1024x768 (4:3 = 1.333): 576x448 (1.286) is nearest; height fits: scale 448/768 -> 597x448, crop 10 px left.
  assert.deepEqual(p.assign(1024, 768), {
    bucket: [576, 448],
    resized: [597, 448],
    crop: { left: 10, top: 0, width: 576, height: 448 },
    aspectError: 576 / 448 - 1024 / 768,
  });
  // 300x1000 (0.3): 256x832 (0.3077); width fits: scale 256/300 -> 256x853, crop 10 px top.
  const tall = p.assign(300, 1000);
  assert.deepEqual(tall.bucket, [256, 832]);
  assert.deepEqual(tall.resized, [256, 853]);
  assert.deepEqual(tall.crop, { left: 0, top: 10, width: 256, height: 832 });
  // Exact ties in aspect-ratio error (found by search) go to the first bucket in sorted order, as numpy's argmin.
  assert.deepEqual(p.assign(93, 135).bucket, [384, 640]); // 0.6889: 0.6 and 0.7778 equally far
  assert.deepEqual(p.assign(124, 84).bucket, [576, 448]);
  // A picture whose size is a bucket goes there unscaled; a small square is upscaled to 512.
  assert.deepEqual(p.assign(384, 640).resized, [384, 640]);
  assert.deepEqual(p.assign(100, 100), {
    bucket: [512, 512],
    resized: [512, 512],
    crop: { left: 0, top: 0, width: 512, height: 512 },
    aspectError: 0,
  });
});

test("no_upscale: small images keep their size (bucket floored to the step), big ones shrink to the area", () => {
  const p = new BucketPlanner({ ...settings, noUpscale: true });
  const small = p.assign(200, 300);
  assert.deepEqual(small.resized, [200, 300]);
  assert.deepEqual(small.bucket, [192, 256]);
  assert.deepEqual(small.crop, { left: 4, top: 22, width: 192, height: 256 });
  // 2000x1000: sqrt(262144*2)=724.08 -> 704 wide needs 320 high (2.2:1); 362.04 -> 320 high needs 640 wide
  // (2:1, exact), so 640x320.
  const big = p.assign(2000, 1000);
  assert.deepEqual(big.resized, [640, 320]);
  assert.deepEqual(big.bucket, [640, 320]);
});

test("without bucketing every image covers the resolution and is center-cropped", () => {
  const a = fixedResolutionAssignment(1000, 500, [512, 512]);
  assert.deepEqual(a.resized, [1024, 512]);
  assert.deepEqual(a.crop, { left: 256, top: 0, width: 512, height: 512 });
});
