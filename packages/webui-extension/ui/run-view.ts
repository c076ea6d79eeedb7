/**
 * <ls-run-view>: one job's live view, built only from its persisted events (so a reload or a reconnect
 * rebuilds the same picture). A training job shows its numbers (step, epoch, loss and its average, lr, it/s,
 * ETA), the loss chart with its moving average, the lr chart, the sample grids of each save, the training-
 * health advice and the log; other jobs show their progress. Every area has a fixed size from the first
 * event on, so nothing moves while events stream in.
 */

import type { TrainEvent, HealthNote as TrainerHealthNote } from "@lora-studio/trainer";
import { css, html, LitElement, nothing } from "lit";
import type { JobEvent, JobRecord, StudioApi } from "./api.ts";
import "./chart.ts";
import { shared } from "./styles.ts";

/** The trainer's step event as the job forwards it (types only: nothing of the trainer is bundled). */
type Metric = Omit<Extract<TrainEvent, { type: "step" }>, "type" | "evalLoss">;
type HealthNote = Pick<TrainerHealthNote, "kind" | "message">;

/** "1:02:03" / "2:03" */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

const fmt = (v: number | undefined, digits = 4) =>
  v === undefined || !Number.isFinite(v) ? "—" : v.toPrecision(digits);

function logLine(e: JobEvent): string | null {
  const d = e.data ?? {};
  switch (e.type) {
    case "log":
      return `${d.level === "info" || d.level === undefined ? "" : `${String(d.level).toUpperCase()} `}${d.message}`;
    case "error":
      return `ERROR ${d.message}`;
    case "state":
      return `state: ${d.state}${d.reason ? ` (${d.reason})` : ""}${d.error ? `: ${d.error}` : ""}`;
    case "plan":
      return `plan: ${d.totalSteps} steps (${d.stepsPerEpoch} per epoch x ${d.epochs} epochs)${Number(d.startStep) > 0 ? `, resuming at step ${d.startStep}` : ""}`;
    case "saved":
      return `saved ${d.lora} (step ${d.step})`;
    case "hot-loaded":
      return `in the Lora folder: ${(d.files as string[]).join(", ")}`;
    case "stop-requested":
      return d.reason === "pause"
        ? "pause asked: the job saves a checkpoint after this step"
        : "cancel asked";
    case "progress":
      return `${d.done}/${d.total} ${d.label ?? ""}`;
    default:
      return null;
  }
}

export class RunView extends LitElement {
  static override properties = {
    api: { attribute: false },
    job: { attribute: false },
    events: { attribute: false },
  };
  declare api: StudioApi;
  declare job: JobRecord;
  declare events: JobEvent[];

  constructor() {
    super();
    this.events = [];
  }

  static override styles = [
    shared,
    css`
      .stats { display: grid; grid-template-columns: repeat(8, minmax(0, 1fr)); gap: 6px; margin: 8px 0; }
      .stat { background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 6px; padding: 4px 6px; height: 40px; box-sizing: border-box; overflow: hidden; }
      .stat b { display: block; font-size: 14px; font-variant-numeric: tabular-nums; white-space: nowrap; }
      .stat span { font-size: 11px; color: var(--ls-muted); }
      .bar { height: 6px; background: var(--ls-panel); border-radius: 3px; overflow: hidden; margin-bottom: 8px; }
      .bar div { height: 100%; background: var(--ls-accent); transition: width 0.3s; }
      .charts { display: grid; grid-template-columns: 3fr 2fr; gap: 8px; align-items: start; }
      h4 { margin: 10px 0 4px; font-size: 13px; }
      .samples { display: flex; gap: 8px; overflow-x: auto; height: 196px; align-items: flex-start; background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 8px; padding: 6px; box-sizing: border-box; }
      .samples figure { margin: 0; flex: 0 0 150px; width: 150px; min-width: 0; }
      .samples img { width: 150px; height: 150px; object-fit: contain; background: var(--ls-bg); border-radius: 4px; display: block; }
      .samples figcaption { font-size: 11px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
      .health { height: 96px; overflow: auto; margin: 8px 0; padding: 4px 8px; box-sizing: border-box; background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 8px; }
      .health h4 { margin: 2px 0; }
      .health ul { margin: 2px 0; padding-left: 18px; }
      .health li.warn { color: var(--ls-danger); }
      .log { height: 180px; overflow: auto; font: 12px ui-monospace, monospace; background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 8px; padding: 6px; white-space: pre-wrap; }
    `,
  ];

  private fileUrl(path: string): string {
    return this.api.url(
      `/api/jobs/${encodeURIComponent(this.job.id)}/files?path=${encodeURIComponent(path)}`,
    );
  }

  /** Keeps the log scrolled to its end while the user has not scrolled up. */
  private stick = true;

  override updated(): void {
    const log = this.renderRoot.querySelector<HTMLElement>(".log");
    if (log && this.stick) log.scrollTop = log.scrollHeight;
  }

  private onLogScroll(e: Event): void {
    const el = e.target as HTMLElement;
    this.stick = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  }

  private get theme(): string {
    return this.getAttribute("theme") ?? "light";
  }

  private renderTraining() {
    const theme = this.theme;
    const metrics = this.events.filter((e) => e.type === "metric").map((e) => e.data as unknown as Metric);
    const plan = this.events.filter((e) => e.type === "plan").at(-1)?.data;
    const last = metrics.at(-1);
    const total = last?.totalSteps ?? Number(plan?.totalSteps ?? 0);
    const step = last?.step ?? Number(plan?.startStep ?? 0);
    const samples = this.events
      .filter((e) => e.type === "sample")
      .map((e) => e.data as { step: number; path: string });
    const saves = new Map(
      this.events.filter((e) => e.type === "saved").map((e) => [Number(e.data?.step), String(e.data?.lora)]),
    );
    const health = this.events.filter((e) => e.type === "health").at(-1)?.data as
      | { notes: HealthNote[]; status: string }
      | undefined;
    const stat = (label: string, value: string) =>
      html`<div class="stat"><span>${label}</span><b>${value}</b></div>`;
    return html`
      <div class="stats" aria-label="training numbers">
        ${stat("step", total > 0 ? `${step}/${total}` : "—")}
        ${stat("epoch", last ? String(last.epoch) : "—")}
        ${stat("loss", fmt(last?.loss))}
        ${stat("loss avg", fmt(last?.lossAverage))}
        ${stat("lr", last ? last.lr.toExponential(2) : "—")}
        ${stat("it/s", fmt(last?.itPerSec, 3))}
        ${stat("ETA", last ? formatDuration(last.etaSeconds) : "—")}
        ${stat("samples", String(samples.length))}
      </div>
      <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax=${total} aria-valuenow=${step}><div style="width:${total > 0 ? (100 * step) / total : 0}%"></div></div>
      <div class="charts">
         <ls-line-chart theme=${theme} class="loss-chart" .points=${metrics.map((m) => [m.step, m.loss] as [number, number])} label="loss" smooth></ls-line-chart>
        <ls-line-chart theme=${theme} class="lr-chart" view-width="400" .points=${metrics.map((m) => [m.step, m.lr] as [number, number])} label="lr"></ls-line-chart>
      </div>
      <h4>Samples</h4>
      <div class="samples" aria-label="sample grids">
        ${samples.length === 0 ? html`<span class="muted">Sample grids appear here when the config has sample_prompts and sample_every_n_steps.</span>` : nothing}
        ${samples.map(
          (s) => html`<figure data-step=${s.step}>
            <img src=${this.fileUrl(s.path)} alt=${`samples at step ${s.step}`} width="150" height="150" loading="lazy" />
            <figcaption>step ${s.step}${saves.has(s.step) ? html` · <b>${saves.get(s.step)}</b>` : nothing}</figcaption>
          </figure>`,
        )}
      </div>
      <div class="health" aria-label="training health">
        ${
          health
            ? html`<h4>Training health (${health.status})</h4><ul>${health.notes.map((n) => html`<li class=${n.kind === "falling" ? "ok" : n.kind === "too-short" ? "muted" : "warn"}>${n.message}</li>`)}</ul>`
            : html`<span class="muted">Training health advice appears when the run ends.</span>`
        }
      </div>`;
  }

  private renderProgress() {
    const progress = this.events.filter((e) => e.type === "progress" && typeof e.data?.total === "number");
    const points = progress.map(
      (e) => [e.time, (100 * Number(e.data?.done)) / Math.max(1, Number(e.data?.total))] as [number, number],
    );
    return html`<ls-line-chart theme=${this.theme} .points=${points} label="progress %"></ls-line-chart>`;
  }

  override render() {
    const lines = this.events.map((e) => [e.seq, logLine(e)] as const).filter(([, l]) => l !== null);
    return html`
      ${this.job.kind === "train" ? this.renderTraining() : this.renderProgress()}
      <div class="log" aria-label="log" @scroll=${(e: Event) => this.onLogScroll(e)}>${lines.map(([seq, l]) => `#${seq} ${l}\n`)}</div>`;
  }
}
customElements.define("ls-run-view", RunView);
