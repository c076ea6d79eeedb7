/**
 * One LoRA card of the Library tab: preview, name and family, the prompt token, and on demand its training
 * facts and dataset tags, the user-metadata editor, rename, move and delete. Pure rendering: the tab owns the
 * state and passes the actions in.
 */
import { css, html, nothing } from "lit";
import { type LoraCard, topTags, trainingFacts } from "./library-model.ts";

/** Keys of the WebUI's user-metadata editor, in its spelling and order. */
export const EDIT_KEYS = [
  "activation text",
  "preferred weight",
  "negative text",
  "description",
  "notes",
  "sd version",
];

export interface CardActions {
  previewUrl(path: string): string;
  toggleSelected(path: string, on: boolean): void;
  toggleDetails(path: string): void;
  toggleEditing(path: string): void;
  copy(token: string): void;
  rename(card: LoraCard, name: string): void;
  move(card: LoraCard, folder: string): void;
  remove(card: LoraCard): void;
  saveMetadata(card: LoraCard, form: HTMLElement): void;
  /** A click on a tag searches for it. */
  searchTag(tag: string): void;
}

export interface CardState {
  selected: boolean;
  details: boolean;
  editing: boolean;
}

export const cardStyles = css`
  .card { border: 1px solid var(--ls-border); border-radius: 8px; background: var(--ls-panel); overflow: hidden; display: flex; flex-direction: column; }
  .card.selected { border-color: var(--ls-accent); }
  .preview { aspect-ratio: 1; background: var(--ls-bg); display: flex; align-items: center; justify-content: center; }
  .preview img { width: 100%; height: 100%; object-fit: cover; }
  .body { padding: 8px; display: flex; flex-direction: column; gap: 4px; }
  .name { font-weight: 600; word-break: break-all; }
  code { font-size: 12px; word-break: break-all; }
  .edit { display: grid; grid-template-columns: 1fr; gap: 4px; }
  .edit label { display: flex; flex-direction: column; font-size: 12px; }
  dl.facts { display: grid; grid-template-columns: auto 1fr; gap: 1px 8px; margin: 0; font-size: 12px; }
  dl.facts dt { color: var(--ls-muted); }
  dl.facts dd { margin: 0; word-break: break-word; }
  .tags { display: flex; flex-wrap: wrap; gap: 3px; }
  .tag { font-size: 11px; padding: 1px 6px; border-radius: 10px; }
  .tag .n { color: var(--ls-muted); margin-left: 3px; }
  .row input.grow { flex: 1; min-width: 0; }
`;

function details(c: LoraCard, a: CardActions) {
  const facts = trainingFacts(c.metadata);
  const tags = topTags(c.metadata, 24);
  return html`<div class="details">
    <dl class="facts">
      ${c.alias !== c.name ? html`<dt>alias</dt><dd>${c.alias}</dd>` : nothing}
      <dt>file</dt><dd>${c.path}</dd>
      ${facts.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
    </dl>
    ${
      tags.length > 0
        ? html`<span class="muted">dataset tags</span>
          <div class="tags">
            ${tags.map(([t, n]) => html`<button class="tag" title="show LoRAs with this tag" @click=${() => a.searchTag(t)}>${t}<span class="n">${n}</span></button>`)}
          </div>`
        : html`<span class="muted">no dataset tags stored</span>`
    }
  </div>`;
}

function editor(c: LoraCard, a: CardActions) {
  const raw = c.userMetadata?.raw ?? {};
  return html`<div class="edit">
    ${EDIT_KEYS.map((k) => html`<label>${k}<input data-key=${k} type=${k === "preferred weight" ? "number" : "text"} step="0.05" .value=${String(raw[k] ?? "")} /></label>`)}
    <button class="primary" @click=${(e: Event) => a.saveMetadata(c, (e.target as HTMLElement).parentElement as HTMLElement)}>Save</button>
  </div>`;
}

/** The input just before the clicked button (rename and move rows pair one input with one button). */
const inputBefore = (e: Event) =>
  ((e.target as HTMLElement).previousElementSibling as HTMLInputElement).value;

export function renderCard(c: LoraCard, s: CardState, a: CardActions) {
  const ranks = [...new Set(c.ranks)].join("/") || "?";
  return html`<div class=${s.selected ? "card selected" : "card"} data-path=${c.path}>
    <div class="preview">
      ${c.preview ? html`<img alt="" loading="lazy" src=${a.previewUrl(c.preview)} />` : html`<span class="muted">no preview</span>`}
    </div>
    <div class="body">
      <label class="row"><input type="checkbox" .checked=${s.selected} @change=${(e: Event) => a.toggleSelected(c.path, (e.target as HTMLInputElement).checked)} /><span class="name">${c.name}</span></label>
      <span class="muted">${c.folder ? `${c.folder}/ · ` : ""}${c.family} · rank ${ranks} · ${c.moduleCount} modules · ${(c.size / 1024).toFixed(0)} KiB</span>
      ${c.shortHash ? html`<span class="muted">hash ${c.shortHash}</span>` : nothing}
      ${c.supported ? nothing : html`<span class="error">${c.reason}</span>`}
      <div class="row"><code>${c.token}</code><button @click=${() => a.copy(c.token)}>Copy</button></div>
      <div class="row">
        <button class="details-btn" aria-expanded=${s.details} @click=${() => a.toggleDetails(c.path)}>Details</button>
        <button aria-expanded=${s.editing} @click=${() => a.toggleEditing(c.path)}>Edit metadata</button>
        <button class="delete" @click=${() => a.remove(c)}>Delete</button>
      </div>
      ${s.details ? details(c, a) : nothing}
      ${s.editing ? editor(c, a) : nothing}
      <div class="row">
        <input class="rename grow" aria-label="new name" .value=${c.name} />
        <button class="rename-btn" @click=${(e: Event) => a.rename(c, inputBefore(e))}>Rename</button>
      </div>
      <div class="row">
        <input class="move grow" aria-label="move to subfolder" placeholder="subfolder (empty: top level)" .value=${c.folder} />
        <button class="move-btn" @click=${(e: Event) => a.move(c, inputBefore(e))}>Move</button>
      </div>
    </div>
  </div>`;
}
