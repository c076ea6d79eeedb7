/**
 * Runs tab: every job (newest first) and the selected one's live view (run-view.ts) with pause/resume/cancel.
 * The job list comes from the API when the tab opens and is kept current by the websocket's `job` messages;
 * the selected job's events are replayed from seq 0 and then streamed.
 */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, JobEvent, JobRecord, StudioApi } from "./api.ts";
import "./run-view.ts";
import { shared } from "./styles.ts";

export class RunsTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    focusJob: { attribute: false },
    jobs: { state: true },
    selected: { state: true },
    events: { state: true },
    message: { state: true },
    asked: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  /** A job to show first (the one just started from the Train tab). */
  declare focusJob: string | null;
  declare jobs: JobRecord[];
  declare selected: string | null;
  declare events: JobEvent[];
  declare message: string;
  /** The pause/cancel just clicked, shown until the job's events take over. */
  declare asked: { id: string; action: string } | null;

  constructor() {
    super();
    this.focusJob = null;
    this.jobs = [];
    this.selected = null;
    this.events = [];
    this.message = "";
    this.asked = null;
  }

  static override styles = [
    shared,
    css`
      .layout { display: grid; grid-template-columns: 260px minmax(0, 1fr); gap: 12px; }
      ul { list-style: none; margin: 0; padding: 0; max-height: 760px; overflow: auto; }
      li button { width: 100%; text-align: left; margin-bottom: 4px; }
      li button[aria-current="true"] { border-color: var(--ls-accent); }
      .state { font-weight: 600; }
      .head { min-height: 32px; }
      .head code { font-size: 11px; }
      .stopping { display: inline-block; min-width: 15ch; color: var(--ls-accent); font-weight: 600; }
      p.error { min-height: 1.4em; margin: 4px 0; }
    `,
  ];

  private readonly onHello = (e: Event) => this.setJobs((e as CustomEvent).detail.jobs as JobRecord[]);
  private readonly onJob = (e: Event) => {
    const job = (e as CustomEvent).detail.job as JobRecord;
    const known = this.jobs.some((j) => j.id === job.id);
    this.jobs = known ? this.jobs.map((j) => (j.id === job.id ? job : j)) : [job, ...this.jobs];
    if (this.selected === null || job.id === this.focusJob) {
      if (this.selected !== job.id) this.select(job.id);
    }
  };
  private readonly onEvent = (e: Event) => {
    const ev = (e as CustomEvent).detail.event as JobEvent;
    if (ev.jobId !== this.selected) return;
    const last = this.events.at(-1)?.seq ?? 0;
    if (ev.seq > last) this.events = [...this.events, ev];
  };

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener("hello", this.onHello);
    this.socket.addEventListener("job", this.onJob);
    this.socket.addEventListener("event", this.onEvent);
    void this.api
      .get<{ jobs: JobRecord[] }>("/api/jobs")
      .then((r) => this.setJobs(r.jobs))
      .catch((err: Error) => {
        this.message = err.message;
      });
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.socket.removeEventListener("hello", this.onHello);
    this.socket.removeEventListener("job", this.onJob);
    this.socket.removeEventListener("event", this.onEvent);
  }

  private setJobs(list: JobRecord[]): void {
    this.jobs = [...list].reverse();
    const want = this.focusJob ?? this.selected ?? this.jobs[0]?.id ?? null;
    if (want !== null && want !== this.selected && this.jobs.some((j) => j.id === want)) this.select(want);
  }

  select(id: string): void {
    this.selected = id;
    this.events = [];
    this.socket.subscribe(id, 0);
  }

  /**
   * "pausing after this step…" from the moment a pause is asked for (the job checkpoints after its current
   * step, which can take a while on a real model) until its state changes: from the job's own stop-requested
   * event, so a reload shows it too, and from the click itself before that event arrives.
   */
  private stopNotice(job: JobRecord): string {
    if (job.state !== "running") return "";
    let asked: string | null = this.asked?.id === job.id ? this.asked.action : null;
    for (const e of this.events) {
      if (e.type === "stop-requested") asked = String(e.data?.reason);
      else if (e.type === "state") asked = null;
    }
    return asked === "pause" ? "pausing after this step…" : asked === "cancel" ? "cancelling…" : "";
  }

  private async control(action: "pause" | "resume" | "cancel"): Promise<void> {
    if (action !== "resume" && this.selected !== null) this.asked = { id: this.selected, action };
    try {
      await this.api.send("POST", `/api/jobs/${this.selected}/${action}`);
      this.message = "";
    } catch (err) {
      this.message = (err as Error).message;
    }
  }

  private label(j: JobRecord): string {
    const name = (j.params as { config?: { output_name?: string } } | null)?.config?.output_name;
    return name ? `${j.kind}: ${name}` : j.kind;
  }

  override render() {
    const job = this.jobs.find((j) => j.id === this.selected);
    return html`<div class="layout">
      <ul aria-label="jobs">
        ${this.jobs.length === 0 ? html`<li class="muted">No jobs yet.</li>` : nothing}
        ${this.jobs.map(
          (
            j,
          ) => html`<li><button aria-current=${j.id === this.selected ? "true" : "false"} @click=${() => this.select(j.id)}>
          <span class="state">${j.state}</span> ${this.label(j)}<br /><span class="muted">${new Date(j.createdAt).toLocaleString()}</span></button></li>`,
        )}
      </ul>
      <div>
        ${
          job
            ? html`<div class="row head">
          <span class="state job-state">${job.state}</span><span class="stopping" role="status">${this.stopNotice(job)}</span><span>${this.label(job)}</span><code class="muted">${job.id}</code>
          <button class="pause" ?disabled=${(job.state !== "running" && job.state !== "queued") || this.stopNotice(job) !== ""} @click=${() => this.control("pause")}>Pause</button>
          <button class="resume" ?disabled=${job.state !== "paused"} @click=${() => this.control("resume")}>Resume</button>
          <button class="cancel" ?disabled=${!["queued", "running", "paused"].includes(job.state)} @click=${() => this.control("cancel")}>Cancel</button>
        </div>
        <p class="error">${job.error ?? ""}${this.message}</p>
        <ls-run-view theme=${this.getAttribute("theme") ?? "light"} .api=${this.api} .job=${job} .events=${this.events}></ls-run-view>`
            : html`<p class="muted">Select a job.</p>`
        }
      </div>
    </div>`;
  }
}
customElements.define("ls-runs-tab", RunsTab);
