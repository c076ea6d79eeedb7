/** sharp for the tests: an independent encoder and reader of real PNG/JPEG/WebP files. */
export { default as sharp } from "sharp";
