/**
 * TrainStepRunner: runs a training-step graph repeatedly, carrying its state between steps.
 *
 * Naming convention (the autodiff/optimizer graphs follow it):
 * - every piece of state X (trainable parameters, optimizer moments, step counters) is a graph input named
 *   `state_in.X` and its updated value the graph output `state_out.X`, with the same dtype and shape;
 * - all other inputs (batch, targets, learning rate, ...) are fed per step by the caller;
 * - all other outputs (loss, grad norm, skipped flag, ...) are returned from `step`.
 *
 * Buffers are swapped, not copied: after a step the runner's state holds the arrays ORT returned for
 * `state_out.X`; with a WorkerSession the state's buffers are transferred to the worker and the new ones
 * transferred back, so the state never gets copied between threads.
 */
import type { HostTensor } from "./tensor.ts";
import type { RunOptions } from "./worker-session.ts";

export const STATE_IN = "state_in.";
export const STATE_OUT = "state_out.";

/** Session or WorkerSession. */
export interface RunnableSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(
    feeds: Record<string, HostTensor>,
    outputNames?: readonly string[],
    options?: RunOptions,
  ): Promise<Record<string, HostTensor>>;
}

export class TrainStepRunner {
  /** Current state by name X (without prefix). Replaced after every step. */
  readonly state: Map<string, HostTensor>;
  readonly stateNames: readonly string[];
  private readonly session: RunnableSession;
  private steps = 0;

  constructor(session: RunnableSession, initialState: Map<string, HostTensor>) {
    this.session = session;
    const ins = session.inputNames.filter((n) => n.startsWith(STATE_IN)).map((n) => n.slice(STATE_IN.length));
    const outs = new Set(
      session.outputNames.filter((n) => n.startsWith(STATE_OUT)).map((n) => n.slice(STATE_OUT.length)),
    );
    const problems: string[] = [];
    for (const x of ins) {
      if (!outs.has(x)) problems.push(`graph has ${STATE_IN}${x} but no ${STATE_OUT}${x}`);
      if (!initialState.has(x)) problems.push(`no initial value for state "${x}"`);
    }
    for (const x of outs)
      if (!ins.includes(x)) problems.push(`graph has ${STATE_OUT}${x} but no ${STATE_IN}${x}`);
    for (const x of initialState.keys())
      if (!ins.includes(x)) problems.push(`state "${x}" is not a graph input`);
    if (problems.length > 0)
      throw new Error(`training-step graph and state do not match:\n  ${problems.join("\n  ")}`);
    this.stateNames = ins;
    this.state = new Map(initialState);
  }

  get stepCount(): number {
    return this.steps;
  }

  /**
   * One optimizer step. `inputs` holds the non-state feeds; returns the non-state outputs. State buffers are
   * handed to the session (transferred when it is a WorkerSession) and replaced by the updated ones.
   */
  async step(
    inputs: Record<string, HostTensor>,
    options: { transferInputs?: boolean } = {},
  ): Promise<Record<string, HostTensor>> {
    const feeds: Record<string, HostTensor> = { ...inputs };
    for (const x of this.stateNames) feeds[STATE_IN + x] = this.state.get(x)!;
    const stateFeeds = this.stateNames.map((x) => STATE_IN + x);
    const transfer = options.transferInputs ? Object.keys(feeds) : stateFeeds;
    const out = await this.session.run(feeds, undefined, { transfer });
    const rest: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(out)) {
      if (name.startsWith(STATE_OUT)) this.state.set(name.slice(STATE_OUT.length), t);
      else rest[name] = t;
    }
    this.steps++;
    return rest;
  }
}
