/**
 * Resolves "auto" to one concrete execution provider, once per process, before any model graph is built: what a
 * graph looks like depends on it (16-bit weights kept in place and fp16 compute on a GPU, the fp32 weight cache
 * on the CPU), so deciding per session, after the graph exists, would give a GPU the CPU's graph.
 *
 * Providers that cannot load here are skipped without trying (providers.ts, unavailableReason); installed-looking
 * ones are tried on a one-node graph, and the first that creates a session wins.
 */
import { GraphBuilder } from "../graph/builder.ts";
import { mul } from "../graph/ops/index.ts";
import { consoleSink, type MessageSink } from "./messages.ts";
import {
  AUTO_ORDER,
  type ConcreteProvider,
  type ExecutionProviderChoice,
  fallbackMessage,
  unavailableReason,
} from "./providers.ts";
import { Session } from "./session.ts";

async function tryProvider(provider: ConcreteProvider): Promise<string | undefined> {
  const b = new GraphBuilder("provider-probe");
  const x = b.input("x", "float32", [1]);
  b.output(mul(x, 2), "y");
  try {
    const s = await Session.create(b.build(), {
      executionProvider: provider,
      graphOptimizationLevel: "disabled",
      optimizedModelCache: false,
      onMessage: () => {},
    });
    await s.release();
    return undefined;
  } catch (e) {
    return (e as Error).message.split("\n").slice(1).join(" ").trim() || (e as Error).message;
  }
}

let autoChoice: Promise<{ provider: ConcreteProvider; message: string | undefined }> | undefined;

/**
 * The concrete provider for a choice: itself, or for "auto" the first of cuda, webgpu, cpu that works here (said
 * once per process through `onMessage` when it is not the first, with what was missing and how to install it).
 */
export async function resolveExecutionProvider(
  choice: ExecutionProviderChoice,
  onMessage: MessageSink = consoleSink,
): Promise<ConcreteProvider> {
  if (choice !== "auto") return choice;
  const first = autoChoice === undefined;
  autoChoice ??= (async () => {
    const failures: { provider: ConcreteProvider; error: string }[] = [];
    for (const provider of AUTO_ORDER) {
      const error =
        unavailableReason(provider) ?? (provider === "cpu" ? undefined : await tryProvider(provider));
      if (error === undefined) {
        return { provider, message: failures.length > 0 ? fallbackMessage(failures, provider) : undefined };
      }
      failures.push({ provider, error });
    }
    return { provider: "cpu" as const, message: fallbackMessage(failures, "cpu") };
  })();
  const { provider, message } = await autoChoice;
  if (first && message) onMessage(message, "warn");
  return provider;
}
