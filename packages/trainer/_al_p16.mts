import sharp from "sharp";
import { loadSquareRgb } from "/work/main/packages/trainer/src/autolabel/preprocess.ts";
const px = new Uint16Array(4 * 4 * 3).fill(65535 * 0.5);
for (let i = 0; i < 16; i++) px[i * 3] = 65535;
await sharp(Buffer.from(px.buffer), { raw: { width: 4, height: 4, channels: 3, premultiplied: false } }).toColourspace("rgb16").png().toFile("/tmp/al-smoke/p16.png");
console.log(await sharp("/tmp/al-smoke/p16.png").metadata().then(m => [m.depth, m.channels]));
console.log(Array.from((await loadSquareRgb("/tmp/al-smoke/p16.png", 4)).slice(0, 6)));
await sharp({ create: { width: 8, height: 8, channels: 3, background: "#ff0000" } }).toColourspace("cmyk").jpeg().toFile("/tmp/al-smoke/cmyk.jpg");
console.log(await sharp("/tmp/al-smoke/cmyk.jpg").metadata().then(m => m.space), Array.from((await loadSquareRgb("/tmp/al-smoke/cmyk.jpg", 4)).slice(0, 6)));
