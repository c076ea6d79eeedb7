/** All typed op builders. Each infers output dtype/shape and fails at build time with op, shapes and scope. */
export * from "./conv.ts";
export * from "./elementwise.ts";
export * from "./linalg.ts";
export * from "./norm.ts";
export * from "./reduce.ts";
export * from "./shape.ts";
