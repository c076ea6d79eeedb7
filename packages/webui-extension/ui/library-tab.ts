/**
 * Library tab: the Lora folder as cards (library-card.ts) with search by name, alias, folder, activation text or
 * dataset tag and a family filter; selecting cards opens the merge panel (per-LoRA te/unet multipliers, optional
 * rank, kohya or PEFT, dtype), which also serves one LoRA as resize (with a rank) or convert (without).
 */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, StudioApi } from "./api.ts";
import { type CardActions, cardStyles, renderCard } from "./library-card.ts";
import {
  type LibraryFilter,
  type LoraCard,
  matchesFilter,
  mergeAction,
  startingWeight,
} from "./library-model.ts";
import { shared } from "./styles.ts";

/** Multipliers of one selected LoRA in the merge panel. */
interface MergeWeights {
  te: number;
  unet: number;
}

export class LibraryTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    cards: { state: true },
    editing: { state: true },
    details: { state: true },
    message: { state: true },
    undoId: { state: true },
    selected: { state: true },
    filter: { state: true },
    mergeRank: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  declare cards: LoraCard[] | null;
  declare editing: string | null;
  declare details: Set<string>;
  declare message: string;
  declare undoId: string | null;
  /** Selected paths, in selection order, with their merge multipliers. */
  declare selected: Map<string, MergeWeights>;
  declare filter: LibraryFilter;
  declare mergeRank: number | null;

  constructor() {
    super();
    this.cards = null;
    this.editing = null;
    this.details = new Set();
    this.message = "";
    this.undoId = null;
    this.selected = new Map();
    this.filter = { query: "", family: "" };
    this.mergeRank = null;
  }

  static override styles = [
    shared,
    cardStyles,
    css`
      .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; }
      .toolbar { margin-bottom: 8px; }
      .toolbar input[type="search"] { flex: 1; min-width: 12em; }
      .merge { display: flex; flex-direction: column; gap: 6px; }
      .merge table { border-collapse: collapse; font-size: 13px; }
      .merge td, .merge th { padding: 2px 6px; text-align: left; }
      .merge td input { width: 6em; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener("library-changed", () => void this.load());
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const r = await this.api.get<{ cards: LoraCard[] }>("/api/lora");
      this.cards = r.cards.sort((a, b) => a.path.localeCompare(b.path));
      // A selection whose file is gone (renamed, deleted elsewhere) is dropped, not merged by a stale path.
      const present = new Set(this.cards.map((c) => c.path));
      const kept = [...this.selected].filter(([p]) => present.has(p));
      if (kept.length !== this.selected.size) this.selected = new Map(kept);
    } catch (err) {
      this.message = `Could not list the Lora folder: ${(err as Error).message}`;
    }
  }

  private async act(label: string, f: () => Promise<unknown>): Promise<void> {
    try {
      await f();
      this.message = label;
    } catch (err) {
      this.message = `${(err as Error).message}`;
    }
    await this.load();
  }

  private readonly actions: CardActions = {
    previewUrl: (path) => this.api.url(`/api/lora/preview?path=${encodeURIComponent(path)}&thumb=384`),
    toggleSelected: (path, on) => {
      const s = new Map(this.selected);
      const card = this.cards?.find((c) => c.path === path);
      if (on && card) {
        const w = startingWeight(card);
        s.set(path, { te: w, unet: w });
      } else s.delete(path);
      this.selected = s;
    },
    toggleDetails: (path) => {
      const d = new Set(this.details);
      if (!d.delete(path)) d.add(path);
      this.details = d;
    },
    toggleEditing: (path) => {
      this.editing = this.editing === path ? null : path;
    },
    copy: (token) => void this.copy(token),
    rename: (card, name) =>
      void this.act(`Renamed ${card.name} to ${name}`, () =>
        this.api.send("POST", "/api/lora/rename", { path: card.path, name }),
      ),
    move: (card, folder) =>
      void this.act(
        `Moved ${card.name} to ${folder.trim() === "" ? "the top level" : `${folder.trim()}/`}`,
        () => this.api.send("POST", "/api/lora/move", { path: card.path, folder: folder.trim() }),
      ),
    remove: (card) =>
      void this.act(`Deleted ${card.name}`, async () => {
        const r = await this.api.send<{ trashId: string }>("POST", "/api/lora/delete", { path: card.path });
        this.undoId = r.trashId;
      }),
    saveMetadata: (card, form) => void this.saveMetadata(card, form),
    searchTag: (tag) => {
      this.filter = { ...this.filter, query: tag };
    },
  };

  private async undo(): Promise<void> {
    const id = this.undoId;
    this.undoId = null;
    await this.act("Restored", () => this.api.send("POST", "/api/lora/undo-delete", { trashId: id }));
  }

  private async saveMetadata(card: LoraCard, form: HTMLElement): Promise<void> {
    const metadata: Record<string, unknown> = {};
    for (const el of form.querySelectorAll<HTMLInputElement>("[data-key]")) {
      const key = el.dataset.key as string;
      metadata[key] = key === "preferred weight" ? Number(el.value || 0) : el.value;
    }
    await this.act(`Saved metadata of ${card.name}`, () =>
      this.api.send("PUT", "/api/lora/user-metadata", { path: card.path, metadata }),
    );
    this.editing = null;
  }

  private async copy(token: string): Promise<void> {
    try {
      await navigator.clipboard.writeText(token);
      this.message = `Copied ${token}`;
    } catch {
      this.message = `Copy this token: ${token}`;
    }
  }

  private setWeight(path: string, key: keyof MergeWeights, value: string): void {
    const w = this.selected.get(path);
    const n = Number(value);
    if (!w || value.trim() === "" || !Number.isFinite(n)) return;
    this.selected = new Map(this.selected).set(path, { ...w, [key]: n });
  }

  private async merge(): Promise<void> {
    const field = (id: string) =>
      this.renderRoot.querySelector<HTMLInputElement | HTMLSelectElement>(id)?.value ?? "";
    const out = field("#merge-out").trim();
    const action = mergeAction(this.selected.size, this.mergeRank);
    const inputs = [...this.selected].map(([path, w]) => ({ path, te: w.te, unet: w.unet }));
    await this.act(`${action} job queued: ${out} (progress in Runs)`, () =>
      this.api.send("POST", "/api/lora/merge", {
        inputs,
        output: out,
        rank: this.mergeRank,
        format: field("#merge-format"),
        dtype: field("#merge-dtype"),
      }),
    );
  }

  private renderMergePanel() {
    const action = mergeAction(this.selected.size, this.mergeRank);
    const name = (path: string) => this.cards?.find((c) => c.path === path)?.name ?? path;
    return html`<div class="banner merge" aria-label="merge selected LoRAs">
      <table>
        <thead><tr><th>LoRA</th><th>text encoder ×</th><th>UNet ×</th></tr></thead>
        <tbody>
          ${[...this.selected].map(
            ([path, w]) => html`<tr data-path=${path}>
              <td>${name(path)}</td>
              <td><input class="te" type="number" step="0.05" aria-label="text encoder multiplier of ${name(path)}" .value=${String(w.te)} @change=${(e: Event) => this.setWeight(path, "te", (e.target as HTMLInputElement).value)} /></td>
              <td><input class="unet" type="number" step="0.05" aria-label="UNet multiplier of ${name(path)}" .value=${String(w.unet)} @change=${(e: Event) => this.setWeight(path, "unet", (e.target as HTMLInputElement).value)} /></td>
            </tr>`,
          )}
        </tbody>
      </table>
      <div class="row">
        <input id="merge-out" placeholder="output name (or subfolder/name)" aria-label="output name" />
        <input id="merge-rank" type="number" min="1" placeholder="rank (optional)" aria-label="rank"
          @input=${(e: Event) => {
            const v = (e.target as HTMLInputElement).value;
            this.mergeRank = v === "" ? null : Number(v);
          }} />
        <select id="merge-format" aria-label="format"><option value="kohya">kohya (WebUI, ComfyUI)</option><option value="peft">PEFT / diffusers</option></select>
        <select id="merge-dtype" aria-label="dtype"><option value="F16">fp16</option><option value="BF16">bf16</option><option value="F32">fp32</option></select>
        <button class="primary" id="merge-btn" @click=${() => this.merge()}>${action}</button>
        <button @click=${() => (this.selected = new Map())}>Clear selection</button>
      </div>
    </div>`;
  }

  override render() {
    const all = this.cards ?? [];
    const shown = all.filter((c) => matchesFilter(c, this.filter));
    const families = [...new Set(all.map((c) => c.family))].sort();
    return html`
      <div class="row" role="status" aria-live="polite">
        <span class="message">${this.message}</span>
        ${this.undoId ? html`<button class="undo" @click=${() => this.undo()}>Undo delete</button>` : nothing}
      </div>
      <div class="row toolbar">
        <input type="search" id="library-search" aria-label="search LoRAs" placeholder="search name, alias, folder, activation text, tags"
          .value=${this.filter.query} @input=${(e: Event) => (this.filter = { ...this.filter, query: (e.target as HTMLInputElement).value })} />
        <select id="library-family" aria-label="model family" @change=${(e: Event) => (this.filter = { ...this.filter, family: (e.target as HTMLSelectElement).value })}>
          <option value="">all families</option>
          ${families.map((f) => html`<option value=${f} ?selected=${this.filter.family === f}>${f}</option>`)}
        </select>
        <span class="muted" id="library-count">${this.cards ? `${shown.length} of ${all.length}` : ""}</span>
        <span class="muted">${this.selected.size} selected</span>
        <button @click=${() => this.load()}>Refresh</button>
        <button title="read and hash every LoRA now, as a pausable job" @click=${() => this.act("Indexing job queued (see Runs)", () => this.api.send("POST", "/api/jobs", { kind: "library-index" }))}>Index all</button>
      </div>
      ${this.selected.size > 0 ? this.renderMergePanel() : nothing}
      ${
        this.cards === null
          ? html`<p class="muted">Loading…</p>`
          : all.length === 0
            ? html`<p class="muted">The Lora folder is empty.</p>`
            : shown.length === 0
              ? html`<p class="muted">No LoRA matches.</p>`
              : html`<div class="grid">${shown.map((c) =>
                  renderCard(
                    c,
                    {
                      selected: this.selected.has(c.path),
                      details: this.details.has(c.path),
                      editing: this.editing === c.path,
                    },
                    this.actions,
                  ),
                )}</div>`
      }
    `;
  }
}
customElements.define("ls-library-tab", LibraryTab);
