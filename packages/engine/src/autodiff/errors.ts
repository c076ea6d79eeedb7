/** Errors raised while building a backward graph: they name the op/node and the reason. */
export class AutodiffError extends Error {
  override name = "AutodiffError";
}
