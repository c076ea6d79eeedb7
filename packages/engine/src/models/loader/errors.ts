/** Typed loader errors naming the file and, where there is one, the tensor key. */

export type CheckpointErrorCode =
  | "PICKLE_REFUSED"
  | "NOT_A_CHECKPOINT"
  | "UNSUPPORTED_FAMILY"
  | "MISSING_TENSOR"
  | "SHAPE_MISMATCH"
  | "BAD_DTYPE"
  | "BAD_CONFIG";

export class CheckpointError extends Error {
  constructor(
    readonly code: CheckpointErrorCode,
    readonly file: string,
    message: string,
    readonly key?: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "CheckpointError";
  }
}

/** What users see for .ckpt/.pt pickles: they can run code when loaded, so they are never opened. */
export function pickleRefusal(path: string): CheckpointError {
  return new CheckpointError(
    "PICKLE_REFUSED",
    path,
    "this is a PyTorch pickle (.ckpt/.pt/.bin). Pickles can execute code when loaded, so lora-studio never " +
      "unpickles them. Convert it to .safetensors once, in a Python environment you trust, e.g.\n" +
      "  python -c \"import torch, safetensors.torch as st; sd = torch.load('model.ckpt', map_location='cpu', " +
      "weights_only=True); sd = sd.get('state_dict', sd); st.save_file({k: v.contiguous() for k, v in sd.items() " +
      "if isinstance(v, torch.Tensor)}, 'model.safetensors')\"\n" +
      "or with the AUTOMATIC1111 WebUI's Checkpoint Merger (save as safetensors), then pass the .safetensors file.",
  );
}
