/**
 * `auto` resolution (src/runtime/provider-probe.ts, providers.ts unavailableReason): providers that cannot load
 * are recognised from the files they need, without a native try; on a machine with neither the CUDA build nor a
 * Vulkan loader, `auto` resolves to the CPU once per process with one message, and nothing native reaches stderr.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { unavailableReason } from "../src/runtime/providers.ts";

const tmp = mkdtempSync(join(tmpdir(), "provider-probe-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("CUDA and TensorRT need their provider library beside onnxruntime-node's binding", () => {
  const ortDir = join(tmp, "ort");
  mkdirSync(ortDir);
  assert.match(
    unavailableReason("cuda", { ortDir }) ?? "",
    /onnxruntime_providers_cuda\.(so|dll|dylib) is not installed/,
  );
  assert.match(unavailableReason("tensorrt", { ortDir }) ?? "", /onnxruntime_providers_tensorrt/);
  const lib =
    process.platform === "win32"
      ? "onnxruntime_providers_cuda.dll"
      : process.platform === "darwin"
        ? "libonnxruntime_providers_cuda.dylib"
        : "libonnxruntime_providers_cuda.so";
  writeFileSync(join(ortDir, lib), "");
  assert.equal(unavailableReason("cuda", { ortDir }), undefined);
  assert.equal(unavailableReason("cpu", { ortDir }), undefined);
});

test("WebGPU on Linux needs the Vulkan loader on the library path", {
  skip: process.platform !== "linux",
}, () => {
  const libs = join(tmp, "libs");
  mkdirSync(libs);
  assert.match(unavailableReason("webgpu", { libraryDirs: [libs] }) ?? "", /libvulkan\.so\.1/);
  writeFileSync(join(libs, "libvulkan.so.1"), "");
  assert.equal(unavailableReason("webgpu", { libraryDirs: [libs] }), undefined);
});

test("auto on a CPU-only machine: cpu, one message per process, no native errors on stderr", (t) => {
  if (unavailableReason("cuda") === undefined || unavailableReason("webgpu") === undefined) {
    t.skip("a GPU provider may load here");
    return;
  }
  const src = fileURLToPath(new URL("../src/", import.meta.url));
  const script = `
    const { resolveExecutionProvider } = await import(${JSON.stringify(`${src}runtime/provider-probe.ts`)});
    const { Session } = await import(${JSON.stringify(`${src}runtime/session.ts`)});
    const { GraphBuilder } = await import(${JSON.stringify(`${src}graph/builder.ts`)});
    const { mul } = await import(${JSON.stringify(`${src}graph/ops/index.ts`)});
    const said = [];
    const sink = (m, level) => said.push((level ?? "warn") + ": " + m.split("\\n")[0]);
    const a = await resolveExecutionProvider("auto", sink);
    const b = await resolveExecutionProvider("auto", sink);
    const g = new GraphBuilder("g"); const x = g.input("x", "float32", [1]); g.output(mul(x, 2), "y");
    const s = await Session.create(g.build(), { executionProvider: "auto", onMessage: sink });
    console.log(JSON.stringify({ a, b, session: s.provider, said }));
  `;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
  assert.equal(out.a, "cpu");
  assert.equal(out.b, "cpu");
  assert.equal(out.session, "cpu");
  assert.deepEqual(
    out.said,
    [
      'warn: lora-studio: execution provider "auto" is using cpu.',
      'warn: lora-studio: execution provider "auto" is using cpu.',
    ],
    "once from the resolver, once from the session that was asked for auto",
  );
  assert.doesNotMatch(r.stderr, /onnxruntime|Vulkan|vulkan/, r.stderr);
});
