/**
 * Resolves "auto" to one concrete execution provider, once per process, before any model graph is built: what a
 * graph looks like depends on it (16-bit weights kept in place and fp16 compute on a GPU, the fp32 weight cache
 * on the CPU), so deciding per session, after the graph exists, would give a GPU the CPU's graph.
 *
 * Providers that cannot load here are skipped without trying (providers.ts, unavailableReason); installed-looking
 * ones are tried on a one-node graph, and the first that creates a session wins (Session.create's `auto`).
 */
import { GraphBuilder } from "../graph/builder.ts";
import { mul } from "../graph/ops/index.ts";
import { consoleSink, type MessageSink } from "./messages.ts";
import type { ConcreteProvider, ExecutionProviderChoice } from "./providers.ts";
import { Session } from "./session.ts";

let autoChoice: Promise<{ provider: ConcreteProvider; message: string | undefined }> | undefined;

/**
 * The concrete provider for a choice: itself, or for "auto" the one Session.create's own `auto` loop lands on
 * for a one-node graph (said once per process through `onMessage` when it is not the first, with what was
 * missing and how to install it).
 */
export async function resolveExecutionProvider(
  choice: ExecutionProviderChoice,
  onMessage: MessageSink = consoleSink,
): Promise<ConcreteProvider> {
  if (choice !== "auto") return choice;
  const first = autoChoice === undefined;
  autoChoice ??= (async () => {
    const b = new GraphBuilder("provider-probe");
    b.output(mul(b.input("x", "float32", [1]), 2), "y");
    const s = await Session.create(b.build(), {
      executionProvider: "auto",
      graphOptimizationLevel: "disabled",
      optimizedModelCache: false,
      onMessage: () => {},
    });
    await s.release();
    return { provider: s.provider, message: s.fallback };
  })();
  const { provider, message } = await autoChoice;
  if (first && message) onMessage(message, "warn");
  return provider;
}
