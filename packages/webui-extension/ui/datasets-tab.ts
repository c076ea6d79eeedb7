/**
 * Datasets tab: dataset list, upload, thumbnail grid with inline caption editing, bulk prefix/suffix, and two
 * jobs followed live over the websocket: dataset check (its flagged pictures listed) and auto-label (the
 * trainer's tagger: threshold, prefix/suffix, overwrite off by default; progress per picture, then the grid's
 * captions are reloaded).
 */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, JobEvent, StudioApi } from "./api.ts";
import { shared } from "./styles.ts";

interface Img {
  file: string;
  width: number | null;
  height: number | null;
  caption: string;
  captionSource: string;
}

interface CheckRow {
  relPath: string;
  flags: Array<{ kind: string; detail: string }>;
}

export class DatasetsTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    datasets: { state: true },
    current: { state: true },
    images: { state: true },
    status: { state: true },
    checkRows: { state: true },
    labelProgress: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  declare datasets: Array<{ name: string; images: number }>;
  declare current: string | null;
  declare images: Img[];
  declare status: string;
  declare checkRows: CheckRow[] | null;
  /** The running auto-label job's progress, e.g. { done: 3, total: 8 }. */
  declare labelProgress: { done: number; total: number } | null;
  private checkJob: string | null = null;
  /** The finished check whose contact sheet is shown (its job id), or null. */
  private sheetJob: string | null = null;
  private labelJob: string | null = null;

  constructor() {
    super();
    this.datasets = [];
    this.current = null;
    this.images = [];
    this.status = "";
    this.checkRows = null;
    this.labelProgress = null;
  }

  static override styles = [
    shared,
    css`
      .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; margin-top: 8px; }
      .tile { border: 1px solid var(--ls-border); border-radius: 8px; background: var(--ls-panel); padding: 6px; display: flex; flex-direction: column; gap: 4px; }
      .tile img { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: 4px; background: var(--ls-bg); }
      .tile.flagged { border-color: var(--ls-danger); }
      .tile .flag { color: var(--ls-danger); font-size: 12px; }
      .sheet img { max-width: 100%; border: 1px solid var(--ls-border); border-radius: 6px; }
      textarea { width: 100%; min-height: 54px; resize: vertical; }
      .flags { font-size: 12px; }
      fieldset.auto-label { border: 1px solid var(--ls-border); border-radius: 6px; margin-top: 6px; }
      fieldset.auto-label label { font-size: 12px; }
      progress { width: 160px; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener(
      "event",
      (e) => void this.onJobEvent((e as CustomEvent).detail.event as JobEvent),
    );
    void this.loadList();
  }

  private async onJobEvent(ev: JobEvent): Promise<void> {
    const failed = ev.type === "state" && (ev.data?.state === "failed" || ev.data?.state === "cancelled");
    if (ev.jobId === this.checkJob) {
      if (ev.type === "result") {
        const result = ev.data as { rows?: CheckRow[]; contactSheet?: string | null };
        this.checkRows = (result.rows ?? []).filter((r) => r.flags.length > 0);
        this.sheetJob = result.contactSheet ? ev.jobId : null;
        this.status = `Dataset check done: ${this.checkRows.length} images flagged`;
      } else if (failed) this.status = `Dataset check ${ev.data?.state}: ${ev.data?.error ?? ""}`;
    } else if (ev.jobId === this.labelJob) {
      if (ev.type === "progress") {
        const done = Number(ev.data?.done);
        const total = Number(ev.data?.total);
        this.labelProgress = { done, total };
        this.status = `Auto-label: ${done}/${total} pictures`;
      } else if (ev.type === "result") {
        const c = (ev.data as { counts: Record<string, number> }).counts;
        this.labelProgress = null;
        this.labelJob = null;
        this.status = `Auto-label done: ${c.written} written, ${c.replaced} replaced, ${c.overwritten} overwritten, ${c.kept} kept, ${c.failed} failed`;
        if (this.current) await this.open(this.current);
      } else if (failed) {
        this.labelProgress = null;
        this.labelJob = null;
        this.status = `Auto-label ${ev.data?.state}: ${ev.data?.error ?? ""}`;
      }
    }
  }

  async loadList(): Promise<void> {
    const r = await this.api.get<{ datasets: Array<{ name: string; images: number }> }>("/api/datasets");
    this.datasets = r.datasets;
    if (this.current === null && r.datasets.length > 0) await this.open(r.datasets[0].name);
  }

  async open(name: string): Promise<void> {
    this.current = name;
    this.checkRows = null;
    this.sheetJob = null;
    const r = await this.api.get<{ images: Img[] }>(`/api/datasets/${encodeURIComponent(name)}/images`);
    this.images = r.images;
  }

  private async create(): Promise<void> {
    const input = this.renderRoot.querySelector<HTMLInputElement>("#new-name");
    if (!input?.value) return;
    try {
      const r = await this.api.send<{ name: string }>("POST", "/api/datasets", { name: input.value });
      input.value = "";
      await this.loadList();
      await this.open(r.name);
    } catch (err) {
      this.status = (err as Error).message;
    }
  }

  private async upload(e: Event): Promise<void> {
    const input = e.target as HTMLInputElement;
    if (!this.current || !input.files) return;
    try {
      const r = await this.api.upload<{ images: Img[] }>(
        `/api/datasets/${encodeURIComponent(this.current)}/images`,
        input.files,
      );
      this.status = `Uploaded ${r.images.length} images`;
    } catch (err) {
      this.status = (err as Error).message;
    }
    input.value = "";
    await this.open(this.current);
  }

  async saveCaption(img: Img, caption: string): Promise<void> {
    if (!this.current || caption === img.caption) return;
    try {
      const r = await this.api.send<{ savedTo: string }>(
        "PUT",
        `/api/datasets/${encodeURIComponent(this.current)}/captions/${encodeURIComponent(img.file)}`,
        { caption },
      );
      img.caption = caption;
      this.status = `Saved caption of ${img.file} (${r.savedTo})`;
    } catch (err) {
      this.status = `Caption of ${img.file} not saved: ${(err as Error).message}`;
    }
  }

  private async bulk(): Promise<void> {
    const prefix = this.renderRoot.querySelector<HTMLInputElement>("#prefix")?.value ?? "";
    const suffix = this.renderRoot.querySelector<HTMLInputElement>("#suffix")?.value ?? "";
    if (!prefix && !suffix) return;
    for (const img of this.images) {
      const parts = [prefix, img.caption, suffix].map((p) => p.trim()).filter((p) => p !== "");
      await this.saveCaption(img, parts.join(", "));
    }
    if (this.current) await this.open(this.current);
  }

  private async autoLabel(): Promise<void> {
    if (!this.current) return;
    const value = (id: string) => this.renderRoot.querySelector<HTMLInputElement>(`#al-${id}`);
    const threshold = Number(value("threshold")?.value);
    const body: Record<string, unknown> = {
      threshold: Number.isFinite(threshold) ? threshold : undefined,
      prefix: value("prefix")?.value ?? "",
      suffix: value("suffix")?.value ?? "",
      overwrite: value("overwrite")?.checked === true,
    };
    for (const key of ["model", "captioner"]) {
      const v = value(key)?.value.trim();
      if (v) body[key] = v;
    }
    try {
      const job = await this.api.send<{ id: string }>(
        "POST",
        `/api/datasets/${encodeURIComponent(this.current)}/auto-label`,
        body,
      );
      this.labelJob = job.id;
      this.labelProgress = { done: 0, total: this.images.length };
      this.socket.subscribe(job.id);
      this.status = "Auto-label queued…";
    } catch (err) {
      this.status = (err as Error).message;
    }
  }

  private async check(): Promise<void> {
    if (!this.current) return;
    try {
      const job = await this.api.send<{ id: string }>(
        "POST",
        `/api/datasets/${encodeURIComponent(this.current)}/check`,
        {},
      );
      this.checkJob = job.id;
      this.socket.subscribe(job.id);
      this.status = "Dataset check running…";
    } catch (err) {
      this.status = (err as Error).message;
    }
  }

  private renderAutoLabel() {
    const p = this.labelProgress;
    return html`<fieldset class="auto-label"><legend>Auto-label (tagger)</legend><div class="row">
      <label>tagger <input id="al-model" size="14" placeholder="service default" aria-label="auto-label tagger" /></label>
      <label>captioner <input id="al-captioner" size="14" placeholder="none (folder path)" aria-label="auto-label captioner" /></label>
      <label>threshold <input id="al-threshold" type="number" min="0" max="1" step="0.05" value="0.35" aria-label="auto-label threshold" /></label>
      <label>prefix <input id="al-prefix" size="12" placeholder="e.g. trigger word" aria-label="auto-label prefix" /></label>
      <label>suffix <input id="al-suffix" size="10" aria-label="auto-label suffix" /></label>
      <label title="replace captions a person wrote or edited"><input id="al-overwrite" type="checkbox" aria-label="overwrite a person's captions" /> overwrite edited captions</label>
      <button class="auto-label-btn" ?disabled=${p !== null} @click=${() => this.autoLabel()}>Auto-label</button>
      <progress aria-label="auto-label progress" max=${p?.total || 1} .value=${p?.done ?? 0} style=${p === null ? "visibility:hidden" : ""}></progress>
    </div></fieldset>`;
  }

  override render() {
    const ds = this.current;
    return html`
      <div class="row">
        <label>Dataset
          <select aria-label="dataset" @change=${(e: Event) => this.open((e.target as HTMLSelectElement).value)}>
            ${this.datasets.map((d) => html`<option .value=${d.name} ?selected=${d.name === ds}>${d.name} (${d.images})</option>`)}
          </select>
        </label>
        <input id="new-name" placeholder="new dataset" aria-label="new dataset name" />
        <button @click=${() => this.create()}>Create</button>
        ${
          ds
            ? html`<label class="row">Upload <input type="file" multiple accept="image/png,image/jpeg,image/webp,image/bmp" @change=${(e: Event) => this.upload(e)} /></label>
          <button @click=${() => this.check()}>Check dataset</button>`
            : nothing
        }
      </div>
      ${
        ds
          ? html`<div class="row" style="margin-top:6px">
        <input id="prefix" placeholder="prefix, e.g. trigger word" aria-label="caption prefix" />
        <input id="suffix" placeholder="suffix" aria-label="caption suffix" />
        <button @click=${() => this.bulk()}>Add to all captions</button>
      </div>
      ${this.renderAutoLabel()}`
          : html`<p class="muted">Create a dataset, then upload images.</p>`
      }
      <p class="status" role="status" aria-live="polite">${this.status}</p>
      ${this.checkRows && this.checkRows.length > 0 ? html`<div class="banner flags">${this.checkRows.map((r) => html`<div><b>${r.relPath}</b>: ${r.flags.map((f) => f.detail).join("; ")}</div>`)}</div>` : nothing}
      ${this.sheetJob ? html`<details class="sheet"><summary>Contact sheet</summary><img alt="contact sheet of the dataset check" src=${this.api.url(`/api/jobs/${encodeURIComponent(this.sheetJob)}/contact-sheet`)} /></details>` : nothing}
      <div class="grid">
        ${this.images.map((img) => {
          const flags = this.checkRows?.find((r) => r.relPath === img.file)?.flags ?? [];
          return html`<div class=${flags.length > 0 ? "tile flagged" : "tile"} data-file=${img.file}>
            <img alt=${img.file} loading="lazy" src=${this.api.url(`/api/datasets/${encodeURIComponent(ds ?? "")}/images/${encodeURIComponent(img.file)}?thumb=256`)} />
            <span class="muted">${img.file} · ${img.width}×${img.height}</span>
            ${flags.length > 0 ? html`<span class="flag" title=${flags.map((f) => f.detail).join("\n")}>⚑ ${flags.map((f) => f.kind).join(", ")}</span>` : nothing}
            <textarea aria-label=${`caption of ${img.file}`} .value=${img.caption}
              @change=${(e: Event) => this.saveCaption(img, (e.target as HTMLTextAreaElement).value)}
              @keydown=${(e: KeyboardEvent) => {
                if (e.key === "Enter" && (e.ctrlKey || e.metaKey))
                  void this.saveCaption(img, (e.target as HTMLTextAreaElement).value);
              }}></textarea>
          </div>`;
        })}
      </div>
    `;
  }
}
customElements.define("ls-datasets-tab", DatasetsTab);
