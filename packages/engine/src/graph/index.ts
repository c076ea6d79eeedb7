/** Graph IR, builder and typed ops. */
export * from "./builder.ts";
export * from "./ir.ts";
export * from "./ops/index.ts";
