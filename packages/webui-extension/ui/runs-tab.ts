/** Runs tab: every job, and for the selected one its live chart (loss, else progress), log and pause/resume/cancel. */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, JobEvent, JobRecord, StudioApi } from "./api.ts";
import "./chart.ts";
import { shared } from "./styles.ts";

export class RunsTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    jobs: { state: true },
    selected: { state: true },
    events: { state: true },
    message: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  declare jobs: JobRecord[];
  declare selected: string | null;
  declare events: JobEvent[];
  declare message: string;

  constructor() {
    super();
    this.jobs = [];
    this.selected = null;
    this.events = [];
    this.message = "";
  }

  static override styles = [
    shared,
    css`
      .layout { display: grid; grid-template-columns: 280px 1fr; gap: 12px; }
      ul { list-style: none; margin: 0; padding: 0; max-height: 520px; overflow: auto; }
      li button { width: 100%; text-align: left; margin-bottom: 4px; }
      li button[aria-current="true"] { border-color: var(--ls-accent); }
      .log { height: 180px; overflow: auto; font: 12px ui-monospace, monospace; background: var(--ls-panel); border: 1px solid var(--ls-border); border-radius: 8px; padding: 6px; white-space: pre-wrap; }
      .state { font-weight: 600; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener("hello", (e) => {
      this.jobs = [...((e as CustomEvent).detail.jobs as JobRecord[])].reverse();
      if (this.selected === null && this.jobs.length > 0) this.select(this.jobs[0].id);
    });
    this.socket.addEventListener("job", (e) => {
      const job = (e as CustomEvent).detail.job as JobRecord;
      const rest = this.jobs.filter((j) => j.id !== job.id);
      const known = rest.length !== this.jobs.length;
      this.jobs = known ? this.jobs.map((j) => (j.id === job.id ? job : j)) : [job, ...rest];
      if (!known && this.selected === null) this.select(job.id);
    });
    this.socket.addEventListener("event", (e) => {
      const ev = (e as CustomEvent).detail.event as JobEvent;
      if (ev.jobId === this.selected) this.events = [...this.events, ev];
    });
  }

  select(id: string): void {
    this.selected = id;
    this.events = [];
    this.socket.subscribe(id, 0);
  }

  private async control(action: "pause" | "resume" | "cancel"): Promise<void> {
    try {
      await this.api.send("POST", `/api/jobs/${this.selected}/${action}`);
      this.message = "";
    } catch (err) {
      this.message = (err as Error).message;
    }
  }

  private chartPoints(): { label: string; points: Array<[number, number]> } {
    const metrics = this.events.filter((e) => e.type === "metric" && typeof e.data?.loss === "number");
    if (metrics.length > 0) {
      return {
        label: "loss",
        points: metrics.map((e) => [Number(e.data?.step ?? e.seq), Number(e.data?.loss)]),
      };
    }
    const progress = this.events.filter((e) => e.type === "progress" && typeof e.data?.total === "number");
    return {
      label: "progress %",
      points: progress.map((e) => [
        e.time,
        (100 * Number(e.data?.done)) / Math.max(1, Number(e.data?.total)),
      ]),
    };
  }

  override render() {
    const job = this.jobs.find((j) => j.id === this.selected);
    const chart = this.chartPoints();
    return html`<div class="layout">
      <ul aria-label="jobs">
        ${this.jobs.length === 0 ? html`<li class="muted">No jobs yet.</li>` : nothing}
        ${this.jobs.map(
          (
            j,
          ) => html`<li><button aria-current=${j.id === this.selected ? "true" : "false"} @click=${() => this.select(j.id)}>
          <span class="state">${j.state}</span> ${j.kind}<br /><span class="muted">${new Date(j.createdAt).toLocaleString()}</span></button></li>`,
        )}
      </ul>
      <div>
        ${
          job
            ? html`<div class="row">
          <span class="state job-state">${job.state}</span><span>${job.kind}</span><code class="muted">${job.id}</code>
          <button ?disabled=${job.state !== "running" && job.state !== "queued"} @click=${() => this.control("pause")}>Pause</button>
          <button ?disabled=${job.state !== "paused"} @click=${() => this.control("resume")}>Resume</button>
          <button ?disabled=${!["queued", "running", "paused"].includes(job.state)} @click=${() => this.control("cancel")}>Cancel</button>
        </div>
        ${job.error ? html`<p class="error">${job.error}</p>` : nothing}
        <p class="error">${this.message}</p>
        <ls-line-chart .points=${chart.points} .label=${chart.label} .smooth=${chart.label === "loss"} theme=${this.getAttribute("theme") ?? "light"}></ls-line-chart>
        <div class="log" aria-label="log">${this.events
          .filter((e) => e.type === "log" || e.type === "state" || e.type === "progress")
          .map(
            (e) =>
              `#${e.seq} ${e.type}: ${e.type === "progress" ? `${e.data?.done}/${e.data?.total} ${e.data?.label ?? ""}` : JSON.stringify(e.data)}\n`,
          )}</div>`
            : html`<p class="muted">Select a job.</p>`
        }
      </div>
    </div>`;
  }
}
customElements.define("ls-runs-tab", RunsTab);
