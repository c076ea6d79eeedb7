/**
 * Just enough of the WebAssembly binary format to assemble the small SIMD kernels of this folder from readable
 * instruction lists (opcodes from the WebAssembly core and SIMD specifications). No toolchain is needed and the
 * kernels stay reviewable; see simd-gemm.ts and simd-f16.ts.
 */

export const I32 = 0x7f;
export const V128 = 0x7b;

export function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

export const str = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, "utf8")];
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

// Instruction encoders (WebAssembly core + SIMD opcodes).
export const get = (i: number) => [0x20, ...uleb(i)];
export const set = (i: number) => [0x21, ...uleb(i)];
export const i32c = (v: number) => [0x41, ...sleb(v)];
export const add32 = [0x6a];
export const mul32 = [0x6c];
export const geU32 = [0x4f];
export const block = [0x02, 0x40];
export const loop = [0x03, 0x40];
export const end = [0x0b];
export const br = (d: number) => [0x0c, ...uleb(d)];
export const brIf = (d: number) => [0x0d, ...uleb(d)];
export const f32load = [0x2a, 2, 0];
export const simd = (op: number) => [0xfd, ...uleb(op)];
export const v128load = (offset: number) => [...simd(0x00), 4, ...uleb(offset)];
export const v128store = (offset: number) => [...simd(0x0b), 4, ...uleb(offset)];
export const v128zero = [...simd(0x0c), ...new Array(16).fill(0)];
export const f32x4splat = simd(0x13);
export const f32x4add = simd(0xe4);
export const f32x4mul = simd(0xe6);

/** `for (v = 0; v < limit; v += step) { body }` over i32 locals (unsigned compare). */
export function forLoop(v: number, limit: number, step: number, body: number[]): number[] {
  return [
    ...i32c(0),
    ...set(v),
    ...block,
    ...loop,
    ...get(v),
    ...get(limit),
    ...geU32,
    ...brIf(1),
    ...body,
    ...get(v),
    ...i32c(step),
    ...add32,
    ...set(v),
    ...br(0),
    ...end,
    ...end,
  ];
}

/** A module importing memory env.mem and exporting one function `name` with i32 params and results. */
export function singleFunctionModule(
  name: string,
  params: number,
  results: number,
  locals: [count: number, type: number][],
  body: number[],
): Uint8Array {
  const type = section(
    1,
    vec([[0x60, ...vec(new Array(params).fill([I32])), ...vec(new Array(results).fill([I32]))]]),
  );
  const imports = section(2, vec([[...str("env"), ...str("mem"), 0x02, 0x00, 1]]));
  const funcs = section(3, vec([[0]]));
  const exports = section(7, vec([[...str(name), 0x00, 0]]));
  const fn = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...body, ...end];
  const codeSection = section(10, vec([[...uleb(fn.length), ...fn]]));
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    1,
    0,
    0,
    0,
    ...type,
    ...imports,
    ...funcs,
    ...exports,
    ...codeSection,
  ]);
}

// The tsconfig's lib (ES2023, no DOM) does not declare WebAssembly; this is the slice of it used here.
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
export const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
