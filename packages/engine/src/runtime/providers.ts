/**
 * Execution-provider choice. "auto" tries the best provider this machine can load and falls back to CPU with a
 * message that names what was missing and how to install it. Facts (onnxruntime-node 1.30): cpu and webgpu are
 * bundled; cuda/tensorrt need the CUDA build of ORT (ONNXRUNTIME_NODE_INSTALL=cuda12) plus CUDA 12 and cuDNN 9
 * runtime libraries (TensorRT 10 libraries for tensorrt); webgpu needs libvulkan.so.1 and a GPU with a Vulkan
 * driver on Linux. Whether a provider works is only known by creating a session, so `auto` tries each in turn,
 * except those whose libraries are plainly missing (unavailableReason), which it skips without a native try.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, join } from "node:path";
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

/** Providers that run on a GPU: 16-bit weights stay in place and fp16 compute applies there. */
export function isGpuProvider(provider: string | undefined): boolean {
  return provider === "cuda" || provider === "tensorrt" || provider === "webgpu";
}

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

/** Where onnxruntime-node keeps its native libraries (the CUDA install adds the provider libraries there). */
function ortBinaryDir(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve("onnxruntime-node");
    return join(dirname(entry), "..", "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return undefined;
  }
}

function sharedLibrary(stem: string): string {
  if (process.platform === "win32") return `${stem}.dll`;
  if (process.platform === "darwin") return `lib${stem}.dylib`;
  return `lib${stem}.so`;
}

/** Library folders the Linux loader searches for libvulkan.so.1 (LD_LIBRARY_PATH, then the usual ones). */
function linuxLibraryDirs(): string[] {
  const fromEnv = (process.env.LD_LIBRARY_PATH ?? "").split(delimiter).filter(Boolean);
  const arch = process.arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  return [...fromEnv, `/usr/lib/${arch}`, `/lib/${arch}`, "/usr/lib64", "/usr/lib", "/lib64", "/lib"];
}

/**
 * Why `provider` cannot load on this machine, found without loading it; undefined when it may. `auto` skips such
 * providers instead of trying them: a failed try makes ORT print a native error line (CUDA provider library
 * missing) and Dawn a Vulkan warning on stderr, which a CPU-only user should not see on every run.
 */
export function unavailableReason(
  provider: ConcreteProvider,
  where: { ortDir?: string; libraryDirs?: string[] } = {},
): string | undefined {
  const ortDir = where.ortDir ?? ortBinaryDir();
  switch (provider) {
    case "cpu":
      return undefined;
    case "cuda":
    case "tensorrt": {
      if (!ortDir) return "onnxruntime-node's binaries were not found";
      const lib = sharedLibrary(`onnxruntime_providers_${provider}`);
      return existsSync(join(ortDir, lib)) ? undefined : `${lib} is not installed in ${ortDir}`;
    }
    case "webgpu": {
      if (process.platform !== "linux") return undefined; // Dawn uses D3D12 / Metal there
      const dirs = where.libraryDirs ?? linuxLibraryDirs();
      return dirs.some((d) => existsSync(join(d, "libvulkan.so.1")))
        ? undefined
        : "libvulkan.so.1 (the Vulkan loader) is not installed";
    }
  }
}
