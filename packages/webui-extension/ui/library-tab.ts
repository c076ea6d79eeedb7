/** Library tab: the Lora folder as cards (preview, metadata, token), user-metadata editor, rename, delete/undo, merge. */
import { css, html, LitElement, nothing } from "lit";
import type { EventSocket, StudioApi } from "./api.ts";
import { shared } from "./styles.ts";

interface Card {
  name: string;
  alias: string;
  path: string;
  folder: string;
  family: string;
  ranks: number[];
  moduleCount: number;
  size: number;
  shortHash: string | null;
  supported: boolean;
  reason: string | null;
  preview: string | null;
  token: string;
  metadata: Record<string, unknown>;
  userMetadata: { raw: Record<string, unknown> } | null;
}

const EDIT_KEYS = [
  "activation text",
  "preferred weight",
  "negative text",
  "description",
  "notes",
  "sd version",
];

export class LibraryTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    socket: { attribute: false },
    cards: { state: true },
    editing: { state: true },
    message: { state: true },
    undoId: { state: true },
    selected: { state: true },
  };
  declare api: StudioApi;
  declare socket: EventSocket;
  declare cards: Card[] | null;
  declare editing: string | null;
  declare message: string;
  declare undoId: string | null;
  declare selected: Set<string>;

  constructor() {
    super();
    this.cards = null;
    this.editing = null;
    this.message = "";
    this.undoId = null;
    this.selected = new Set();
  }

  static override styles = [
    shared,
    css`
      .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; }
      .card { border: 1px solid var(--ls-border); border-radius: 8px; background: var(--ls-panel); overflow: hidden; display: flex; flex-direction: column; }
      .preview { aspect-ratio: 1; background: var(--ls-bg); display: flex; align-items: center; justify-content: center; }
      .preview img { width: 100%; height: 100%; object-fit: cover; }
      .body { padding: 8px; display: flex; flex-direction: column; gap: 4px; }
      .name { font-weight: 600; word-break: break-all; }
      code { font-size: 12px; word-break: break-all; }
      .edit { display: grid; grid-template-columns: 1fr; gap: 4px; }
      .edit label { display: flex; flex-direction: column; font-size: 12px; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.socket.addEventListener("library-changed", () => void this.load());
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const r = await this.api.get<{ cards: Card[] }>("/api/lora");
      this.cards = r.cards.sort((a, b) => a.path.localeCompare(b.path));
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

  private rename(card: Card, input: HTMLInputElement): Promise<void> {
    return this.act(`Renamed ${card.name} to ${input.value}`, () =>
      this.api.send("POST", "/api/lora/rename", { path: card.path, name: input.value }),
    );
  }

  private async deleteCard(card: Card): Promise<void> {
    await this.act(`Deleted ${card.name}`, async () => {
      const r = await this.api.send<{ trashId: string }>("POST", "/api/lora/delete", { path: card.path });
      this.undoId = r.trashId;
    });
  }

  private async undo(): Promise<void> {
    const id = this.undoId;
    this.undoId = null;
    await this.act("Restored", () => this.api.send("POST", "/api/lora/undo-delete", { trashId: id }));
  }

  private async save(card: Card, form: HTMLElement): Promise<void> {
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

  private async merge(): Promise<void> {
    const out = this.renderRoot.querySelector<HTMLInputElement>("#merge-out")?.value ?? "";
    const rankText = this.renderRoot.querySelector<HTMLInputElement>("#merge-rank")?.value ?? "";
    const inputs = [...this.selected].map((path) => ({ path, te: 1, unet: 1 }));
    await this.act(`Merge job queued: ${out}`, () =>
      this.api.send("POST", "/api/lora/merge", {
        inputs,
        output: out,
        rank: rankText === "" ? null : Number(rankText),
      }),
    );
  }

  private toggle(path: string, on: boolean): void {
    const s = new Set(this.selected);
    if (on) s.add(path);
    else s.delete(path);
    this.selected = s;
  }

  private renderCard(c: Card) {
    const raw = c.userMetadata?.raw ?? {};
    return html`<div class="card" data-path=${c.path}>
      <div class="preview">
        ${c.preview ? html`<img alt="" loading="lazy" src=${this.api.url(`/api/lora/preview?path=${encodeURIComponent(c.preview)}`)} />` : html`<span class="muted">no preview</span>`}
      </div>
      <div class="body">
        <label class="row"><input type="checkbox" .checked=${this.selected.has(c.path)} @change=${(e: Event) => this.toggle(c.path, (e.target as HTMLInputElement).checked)} /><span class="name">${c.name}</span></label>
        <span class="muted">${c.folder || "/"} · ${c.family} · rank ${[...new Set(c.ranks)].join("/") || "?"} · ${c.moduleCount} modules · ${(c.size / 1024).toFixed(0)} KiB</span>
        ${c.shortHash ? html`<span class="muted">hash ${c.shortHash}</span>` : nothing}
        ${c.supported ? nothing : html`<span class="error">${c.reason}</span>`}
        <div class="row"><code>${c.token}</code><button @click=${() => this.copy(c.token)}>Copy</button></div>
        <div class="row">
          <input class="rename" aria-label="new name" .value=${c.name} size="12" />
          <button class="rename-btn" @click=${(e: Event) => this.rename(c, (e.target as HTMLElement).previousElementSibling as HTMLInputElement)}>Rename</button>
        </div>
        <div class="row">
          <button @click=${() => (this.editing = this.editing === c.path ? null : c.path)}>Edit metadata</button>
          <button class="delete" @click=${() => this.deleteCard(c)}>Delete</button>
        </div>
        ${
          this.editing === c.path
            ? html`<div class="edit">
              ${EDIT_KEYS.map((k) => html`<label>${k}<input data-key=${k} type=${k === "preferred weight" ? "number" : "text"} step="0.05" .value=${String(raw[k] ?? "")} /></label>`)}
              <button class="primary" @click=${(e: Event) => this.save(c, (e.target as HTMLElement).parentElement as HTMLElement)}>Save</button>
            </div>`
            : nothing
        }
      </div>
    </div>`;
  }

  override render() {
    return html`
      <div class="row" role="status" aria-live="polite">
        <span class="message">${this.message}</span>
        ${this.undoId ? html`<button class="undo" @click=${() => this.undo()}>Undo delete</button>` : nothing}
      </div>
      <div class="row banner">
        <span>${this.selected.size} selected</span>
        <input id="merge-out" placeholder="output name" aria-label="merge output name" />
        <input id="merge-rank" type="number" min="1" placeholder="rank (optional)" aria-label="rank" />
        <button ?disabled=${this.selected.size === 0} @click=${() => this.merge()}>Merge / resize</button>
        <button @click=${() => this.load()}>Refresh</button>
        <button title="read and hash every LoRA now, as a pausable job" @click=${() => this.act("Indexing job queued (see Runs)", () => this.api.send("POST", "/api/jobs", { kind: "library-index" }))}>Index all</button>
      </div>
      ${this.cards === null ? html`<p class="muted">Loading…</p>` : this.cards.length === 0 ? html`<p class="muted">The Lora folder is empty.</p>` : html`<div class="grid">${this.cards.map((c) => this.renderCard(c))}</div>`}
    `;
  }
}
customElements.define("ls-library-tab", LibraryTab);
