/**
 * Execution-provider choice. "auto" tries the best provider this machine can load and falls back to CPU with a
 * message that names what was missing and how to install it. Facts (onnxruntime-node 1.30): cpu and webgpu are
 * bundled; cuda/tensorrt need the CUDA build of ORT (ONNXRUNTIME_NODE_INSTALL=cuda12) plus CUDA 12 and cuDNN 9
 * runtime libraries (TensorRT 10 libraries for tensorrt); webgpu needs libvulkan.so.1 and a GPU with a Vulkan
 * driver on Linux. Availability is only known by trying to create a session, so `auto` does exactly that.
 */
import type ort from "onnxruntime-node";

export type ExecutionProviderChoice = "cpu" | "webgpu" | "cuda" | "tensorrt" | "auto";
export type ConcreteProvider = Exclude<ExecutionProviderChoice, "auto">;

/** Order `auto` tries. TensorRT is left out: engine builds take minutes per shape; ask for it explicitly. */
export const AUTO_ORDER: ConcreteProvider[] = ["cuda", "webgpu", "cpu"];

export const INSTALL_HINT: Record<ConcreteProvider, string> = {
  cpu: "",
  cuda:
    "install onnxruntime-node's CUDA binaries with `ONNXRUNTIME_NODE_INSTALL=cuda12 pnpm install` " +
    "and the CUDA 12 + cuDNN 9 runtime libraries (on the library path)",
  tensorrt:
    "install onnxruntime-node's CUDA binaries with `ONNXRUNTIME_NODE_INSTALL=cuda12 pnpm install`, " +
    "the CUDA 12 + cuDNN 9 runtime libraries and TensorRT 10",
  webgpu:
    "WebGPU on Linux needs libvulkan.so.1 and a GPU with a Vulkan driver (CPU drivers such as lavapipe are refused)",
};

/** The `executionProviders` list for one concrete provider. */
export function providerConfig(
  p: ConcreteProvider,
  deviceId = 0,
): ort.InferenceSession.ExecutionProviderConfig[] {
  switch (p) {
    case "cpu":
      return ["cpu"];
    case "cuda":
      return [{ name: "cuda", deviceId }];
    case "tensorrt":
      return [
        { name: "tensorrt", deviceId },
        { name: "cuda", deviceId },
      ];
    case "webgpu":
      return ["webgpu"];
  }
}

export function candidates(choice: ExecutionProviderChoice): ConcreteProvider[] {
  return choice === "auto" ? AUTO_ORDER : [choice];
}

/** One line per provider that could not be used, ending with what `auto` picked. */
export function fallbackMessage(
  failures: { provider: ConcreteProvider; error: string }[],
  used: ConcreteProvider,
): string {
  const lines = failures.map(
    (f) =>
      `  - ${f.provider} unavailable: ${f.error.split("\n")[0].slice(0, 300)}\n    to enable it: ${INSTALL_HINT[f.provider]}`,
  );
  return `lora-studio: execution provider "auto" is using ${used}.\n${lines.join("\n")}`;
}
