/**
 * Generate tab (standalone mode: a WebUI has its own txt2img): prompt and negative prompt, sampler, steps, CFG,
 * seed (-1 = random), size, batch and clip skip; Generate queues a "txt2img" job and follows its events on the
 * websocket (one progress event per sampler step); the images arrive with their infotext. The Lora folder's
 * cards are chips that insert `<lora:alias:preferred weight>` at the prompt's caret.
 *
 * Layout does not move while a job streams: the progress row and the result area keep a fixed height, and the
 * form stays in place. Ctrl+Enter in a prompt field generates. The form and the last results survive a tab
 * switch (kept in module state, as the tab element is recreated).
 */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, JobEvent, JobRecord, StudioApi } from "./api.ts";
import { shared } from "./styles.ts";

interface Options {
  samplers: string[];
  defaults: Record<string, number | string>;
  baseModel: string;
  baseModelExists: boolean;
}

interface Chip {
  name: string;
  alias: string;
  token: string;
  supported: boolean;
}

interface Image {
  file: string;
  seed: number;
  infotext: string;
}

export interface GenerateForm {
  prompt: string;
  negative_prompt: string;
  sampler: string;
  steps: number;
  cfg_scale: number;
  seed: number;
  width: number;
  height: number;
  batch_size: number;
  clip_skip: number;
}

/** What survives the tab being recreated. */
const kept: { form: GenerateForm | null; images: Image[]; notes: string[] } = {
  form: null,
  images: [],
  notes: [],
};

const NUMBER_FIELDS: Array<{
  key: keyof GenerateForm;
  label: string;
  min: number;
  max: number;
  step: number;
}> = [
  { key: "steps", label: "Steps", min: 1, max: 150, step: 1 },
  { key: "cfg_scale", label: "CFG scale", min: 0, max: 30, step: 0.5 },
  { key: "width", label: "Width", min: 8, max: 2048, step: 8 },
  { key: "height", label: "Height", min: 8, max: 2048, step: 8 },
  { key: "batch_size", label: "Batch size", min: 1, max: 8, step: 1 },
  { key: "clip_skip", label: "Clip skip", min: 1, max: 12, step: 1 },
];

export class GenerateTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    options: { state: true },
    chips: { state: true },
    form: { state: true },
    jobId: { state: true },
    progress: { state: true },
    images: { state: true },
    message: { state: true },
    notes: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  declare options: Options | null;
  declare chips: Chip[];
  declare form: GenerateForm;
  declare jobId: string | null;
  declare progress: { done: number; total: number; label: string } | null;
  declare images: Image[];
  declare message: string;
  declare notes: string[];
  private readonly onEvent = (e: Event) => this.handleEvent((e as CustomEvent).detail.event as JobEvent);
  private readonly onLibrary = () => void this.loadChips();

  constructor() {
    super();
    this.options = null;
    this.chips = [];
    this.form = kept.form ?? {
      prompt: "",
      negative_prompt: "",
      sampler: "Euler a",
      steps: 20,
      cfg_scale: 7,
      seed: -1,
      width: 512,
      height: 512,
      batch_size: 1,
      clip_skip: 1,
    };
    this.jobId = null;
    this.progress = null;
    this.images = kept.images;
    this.notes = kept.notes;
    this.message = "";
  }

  static override styles = [
    shared,
    css`
      .layout { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(320px, 1fr); gap: 14px; }
      @media (max-width: 800px) { .layout { grid-template-columns: 1fr; } }
      label { display: flex; flex-direction: column; gap: 2px; font-size: 12px; }
      textarea { width: 100%; resize: vertical; }
      .numbers { display: grid; grid-template-columns: repeat(3, minmax(90px, 1fr)); gap: 8px; margin: 8px 0; }
      .numbers input, .numbers select { width: 100%; }
      .chips { display: flex; flex-wrap: wrap; gap: 4px; max-height: 96px; overflow: auto; margin: 6px 0; }
      .chip { border-radius: 999px; font-size: 12px; padding: 2px 10px; }
      .progress { height: 36px; display: flex; flex-direction: column; justify-content: center; gap: 4px; }
      .bar { height: 8px; border-radius: 4px; background: var(--ls-panel); border: 1px solid var(--ls-border); overflow: hidden; }
      .bar > div { height: 100%; background: var(--ls-accent); transition: width 0.2s; }
      .results { min-height: 420px; display: flex; flex-direction: column; gap: 10px; }
      .gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 8px; }
      figure { margin: 0; border: 1px solid var(--ls-border); border-radius: 8px; background: var(--ls-panel); overflow: hidden; }
      figure img { width: 100%; display: block; image-rendering: pixelated; aspect-ratio: var(--ratio, 1); object-fit: contain; background: var(--ls-bg); }
      figcaption pre { margin: 0; padding: 6px; font-size: 11px; white-space: pre-wrap; word-break: break-word; }
      .placeholder { border: 1px dashed var(--ls-border); border-radius: 8px; min-height: 200px; display: flex; align-items: center; justify-content: center; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener("event", this.onEvent);
    this.socket.addEventListener("library-changed", this.onLibrary);
    void this.loadOptions();
    void this.loadChips();
    void this.reattach();
  }

  /**
   * After a page reload (or a tab switch mid-generation) follows the newest generation still queued or running:
   * its events replay from the first, so the progress bar and then the images come back.
   */
  private async reattach(): Promise<void> {
    if (this.jobId !== null) return;
    const { jobs } = await this.api.get<{ jobs: JobRecord[] }>("/api/jobs").catch(() => ({ jobs: [] }));
    const live = jobs.filter((j) => j.kind === "txt2img" && (j.state === "queued" || j.state === "running"));
    const newest = live.sort((a, b) => a.createdAt - b.createdAt).at(-1);
    if (!newest || this.jobId !== null) return;
    this.jobId = newest.id;
    this.progress = { done: 0, total: (newest.params as { steps?: number }).steps ?? 0, label: newest.state };
    this.socket.subscribe(newest.id, 0);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.socket.removeEventListener("event", this.onEvent);
    this.socket.removeEventListener("library-changed", this.onLibrary);
  }

  private async loadOptions(): Promise<void> {
    try {
      this.options = await this.api.get<Options>("/api/generate/options");
    } catch (err) {
      this.message = `Could not read the generation options: ${(err as Error).message}`;
    }
  }

  private async loadChips(): Promise<void> {
    try {
      const r = await this.api.get<{ cards: Chip[] }>("/api/lora");
      this.chips = r.cards.filter((c) => c.supported).sort((a, b) => a.alias.localeCompare(b.alias));
    } catch {
      this.chips = [];
    }
  }

  private set<K extends keyof GenerateForm>(key: K, value: GenerateForm[K]): void {
    this.form = { ...this.form, [key]: value };
    kept.form = this.form;
  }

  /** Inserts the chip's token at the prompt's caret (with a separating space) and puts the caret after it. */
  private insertToken(token: string): void {
    const area = this.renderRoot.querySelector<HTMLTextAreaElement>("#prompt");
    const text = this.form.prompt;
    const start = area?.selectionStart ?? text.length;
    const end = area?.selectionEnd ?? text.length;
    const before = text.slice(0, start);
    const sep = before === "" || /\s$/.test(before) ? "" : " ";
    const next = `${before}${sep}${token}${text.slice(end)}`;
    this.set("prompt", next);
    const caret = before.length + sep.length + token.length;
    void this.updateComplete.then(() => {
      if (!area) return;
      area.value = next;
      area.focus();
      area.setSelectionRange(caret, caret);
    });
  }

  private async generate(): Promise<void> {
    if (this.jobId !== null) return;
    this.message = "";
    this.progress = { done: 0, total: this.form.steps, label: "queued" };
    try {
      const job = await this.api.send<{ id: string }>("POST", "/api/generate", this.form);
      this.jobId = job.id;
      this.socket.subscribe(job.id, 0);
    } catch (err) {
      this.progress = null;
      this.message = (err as Error).message;
    }
  }

  private async cancel(): Promise<void> {
    if (this.jobId === null) return;
    await this.api.send("POST", `/api/jobs/${this.jobId}/cancel`).catch((err: Error) => {
      this.message = err.message;
    });
  }

  private handleEvent(ev: JobEvent): void {
    if (ev.jobId !== this.jobId) return;
    const d = ev.data ?? {};
    if (ev.type === "progress") {
      this.progress = { done: Number(d.done), total: Number(d.total), label: String(d.label ?? "") };
    } else if (ev.type === "result") {
      const r = d as { images?: Image[]; missingLoras?: string[]; warnings?: string[] };
      this.images = kept.images = r.images ?? [];
      const missing = r.missingLoras?.length ? [`LoRA not found: ${r.missingLoras.join(", ")}`] : [];
      this.notes = kept.notes = [
        ...missing,
        ...(r.warnings ?? []).filter((w) => !w.startsWith("Lora not found")),
      ];
    } else if (ev.type === "state") {
      const state = String(d.state);
      if (state === "failed") this.message = `Generation failed: ${String(d.error ?? "")}`;
      if (state === "cancelled") this.message = "Cancelled.";
      if (state === "done" || state === "failed" || state === "cancelled") {
        this.jobId = null;
        this.progress = null;
      }
    }
  }

  private keydown(e: KeyboardEvent): void {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void this.generate();
    }
  }

  private renderProgress() {
    const p = this.progress;
    const pct = p && p.total > 0 ? Math.round((100 * p.done) / p.total) : 0;
    const text = p === null ? "" : p.label === "sampling" ? `step ${p.done} / ${p.total}` : `${p.label}…`;
    return html`<div class="progress" aria-live="polite">
      <span class="muted" id="progress-text">${text || "\u00a0"}</span>
      <div class="bar" role="progressbar" aria-label="sampling progress" aria-valuemin="0" aria-valuemax="100"
        aria-valuenow=${pct}><div style="width: ${pct}%"></div></div>
    </div>`;
  }

  private renderResults() {
    if (this.images.length === 0)
      return html`<div class="placeholder muted">${this.jobId ? "Generating…" : "Images appear here."}</div>`;
    const ratio = `${this.form.width} / ${this.form.height}`;
    return html`<div class="gallery">
      ${this.images.map(
        (img) => html`<figure style="--ratio: ${ratio}">
          <a href=${this.api.url(`/api/outputs/${img.file}`)} target="_blank" rel="noopener">
            <img src=${this.api.url(`/api/outputs/${img.file}`)} alt=${`seed ${img.seed}`} />
          </a>
          <figcaption><pre class="infotext">${img.infotext}</pre></figcaption>
        </figure>`,
      )}
    </div>`;
  }

  override render() {
    const f = this.form;
    const o = this.options;
    const busy = this.jobId !== null;
    return html`<div class="layout">
      <div>
        <label for="prompt">Prompt</label>
        <textarea id="prompt" rows="4" .value=${f.prompt} @keydown=${(e: KeyboardEvent) => this.keydown(e)}
          @input=${(e: Event) => this.set("prompt", (e.target as HTMLTextAreaElement).value)}></textarea>
        <div class="chips" role="group" aria-label="LoRAs: insert into the prompt">
          ${this.chips.length === 0 ? html`<span class="muted">No LoRAs in the Lora folder yet.</span>` : nothing}
          ${this.chips.map(
            (c) => html`<button class="chip" data-token=${c.token} title=${`insert ${c.token}`}
              @click=${() => this.insertToken(c.token)}>${c.alias}</button>`,
          )}
        </div>
        <label for="negative">Negative prompt</label>
        <textarea id="negative" rows="2" .value=${f.negative_prompt} @keydown=${(e: KeyboardEvent) => this.keydown(e)}
          @input=${(e: Event) => this.set("negative_prompt", (e.target as HTMLTextAreaElement).value)}></textarea>
        <div class="numbers">
          <label>Sampler
            <select id="sampler" .value=${f.sampler} @change=${(e: Event) => this.set("sampler", (e.target as HTMLSelectElement).value)}>
              ${(o?.samplers ?? [f.sampler]).map((s) => html`<option ?selected=${s === f.sampler}>${s}</option>`)}
            </select>
          </label>
          ${NUMBER_FIELDS.map(
            (n) => html`<label>${n.label}
              <input type="number" data-key=${n.key} min=${n.min} max=${n.max} step=${n.step} .value=${String(f[n.key])}
                @change=${(e: Event) => this.set(n.key, Number((e.target as HTMLInputElement).value))} />
            </label>`,
          )}
          <label style="grid-column: span 2">Seed (-1: random)
            <span class="row" style="flex-wrap: nowrap">
              <input id="seed" type="number" min="-1" step="1" .value=${String(f.seed)} style="min-width: 0; flex: 1"
                @change=${(e: Event) => this.set("seed", Number((e.target as HTMLInputElement).value))} />
              <button title="random seed (-1)" aria-label="random seed" @click=${() => this.set("seed", -1)}>Random</button>
              <button title="reuse the last image's seed" aria-label="reuse last seed" ?disabled=${this.images.length === 0}
                @click=${() => this.set("seed", this.images[0]?.seed ?? -1)}>Reuse</button>
            </span>
          </label>
        </div>
        <div class="row">
          <button class="primary" id="generate" ?disabled=${busy} @click=${() => void this.generate()}>Generate</button>
          <button id="cancel" ?disabled=${!busy} @click=${() => void this.cancel()}>Cancel</button>
          <span class="muted" title=${o?.baseModel ?? ""}>model: ${o ? o.baseModel.split(/[\\/]/).pop() : "…"}</span>
        </div>
        ${o && !o.baseModelExists ? html`<div class="banner error">The base model ${o.baseModel} is missing: start the service with <code>--base-model PATH</code>.</div>` : nothing}
        ${this.message ? html`<div class="banner" role="alert">${this.message}</div>` : nothing}
      </div>
      <div class="results">
        ${this.renderProgress()}
        ${this.notes.map((n) => html`<div class="muted warning">${n}</div>`)}
        ${this.renderResults()}
      </div>
    </div>`;
  }
}
customElements.define("ls-generate-tab", GenerateTab);
