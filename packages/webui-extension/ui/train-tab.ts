/**
 * Train tab: the trainer's config keys as a form (tutorial keys first, the rest folded under "Advanced"),
 * presets, validation by the trainer's own code on the service, and Start, which is enabled only when the
 * service reports a training engine (until then the tab says so plainly).
 */
import { css, html, LitElement, nothing } from "lit";
import type { StudioApi } from "./api.ts";
import { shared } from "./styles.ts";

interface Schema {
  keys: string[];
  basic: string[];
  required: string[];
  defaults: Record<string, unknown>;
  choices: Record<string, string[]>;
  engineAvailable: boolean;
  /** Where this service keeps its datasets (absolute), to fill train_data_dir from a dataset name. */
  datasetsDir: string;
}

/** Starting points from the LoRA guides: what differs between a style, a character and a craft pattern. */
export const PRESETS: Record<string, Record<string, unknown>> = {
  style: {
    lora_rank: 16,
    lora_alpha: 8,
    learning_rate: 1e-4,
    epochs: 10,
    repeats: 10,
    shuffle_caption: true,
  },
  character: {
    lora_rank: 32,
    lora_alpha: 16,
    learning_rate: 1e-4,
    epochs: 10,
    repeats: 10,
    keep_tokens: 1,
    shuffle_caption: true,
  },
  "craft pattern": {
    lora_rank: 8,
    lora_alpha: 4,
    learning_rate: 2e-4,
    epochs: 12,
    repeats: 8,
    flip_aug: true,
  },
};

export class TrainTab extends LitElement {
  static override properties = {
    api: { attribute: false },
    schema: { state: true },
    values: { state: true },
    result: { state: true },
    datasets: { state: true },
  };
  declare api: StudioApi;
  declare schema: Schema | null;
  declare values: Record<string, unknown>;
  declare result: string;
  declare datasets: string[];

  constructor() {
    super();
    this.schema = null;
    this.values = {};
    this.result = "";
    this.datasets = [];
  }

  static override styles = [
    shared,
    css`
      form { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 8px; }
      label { display: flex; flex-direction: column; font-size: 12px; }
      details { margin-top: 10px; }
      pre { white-space: pre-wrap; background: var(--ls-panel); padding: 8px; border-radius: 6px; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    void this.api.get<Schema>("/api/train/schema").then((s) => {
      this.schema = s;
      this.values = { ...s.defaults };
    });
    void this.api.get<{ datasets: Array<{ name: string }> }>("/api/datasets").then((r) => {
      this.datasets = r.datasets.map((d) => d.name);
    });
  }

  private field(key: string) {
    const s = this.schema as Schema;
    const v = this.values[key];
    const set = (value: unknown) => {
      this.values = { ...this.values, [key]: value };
    };
    const choices = s.choices[key];
    let input: unknown;
    if (choices) {
      input = html`<select data-key=${key} @change=${(e: Event) => set((e.target as HTMLSelectElement).value)}>${choices.map((c) => html`<option ?selected=${c === v}>${c}</option>`)}</select>`;
    } else if (typeof s.defaults[key] === "boolean") {
      input = html`<input data-key=${key} type="checkbox" .checked=${Boolean(v)} @change=${(e: Event) => set((e.target as HTMLInputElement).checked)} />`;
    } else if (typeof s.defaults[key] === "number") {
      input = html`<input data-key=${key} type="number" step="any" .value=${v === undefined ? "" : String(v)} @change=${(e: Event) => set(Number((e.target as HTMLInputElement).value))} />`;
    } else {
      const text =
        v === undefined ? "" : Array.isArray(v) || typeof v === "object" ? JSON.stringify(v) : String(v);
      input = html`<input data-key=${key} .value=${text} @change=${(e: Event) => {
        const t = (e.target as HTMLInputElement).value;
        if (t === "") {
          const { [key]: _gone, ...rest } = this.values;
          this.values = rest;
          return;
        }
        try {
          set(
            t.startsWith("[") || t.startsWith("{")
              ? JSON.parse(t)
              : /^-?\d+(\.\d+)?(e-?\d+)?$/.test(t)
                ? Number(t)
                : t,
          );
        } catch {
          set(t);
        }
      }} />`;
    }
    return html`<label>${key}${s.required.includes(key) ? " *" : ""}${input}</label>`;
  }

  /** JSON is valid YAML 1.2, so the form's values go to the trainer's YAML parser as they are. */
  private configText(): string {
    return JSON.stringify(this.values, null, 2);
  }

  private async validate(): Promise<void> {
    const r = await this.api.send<{ ok: boolean; message?: string }>("POST", "/api/train/validate", {
      yaml: this.configText(),
    });
    this.result = r.ok ? "The config is valid for the trainer." : (r.message ?? "invalid");
  }

  /** The trainer's dry-run plan: images, repeats, buckets and the step arithmetic. */
  private async plan(): Promise<void> {
    const r = await this.api.send<{ ok: boolean; text?: string; message?: string }>(
      "POST",
      "/api/train/plan",
      {
        yaml: this.configText(),
      },
    );
    this.result = r.ok ? (r.text ?? "") : (r.message ?? "invalid");
  }

  private useDataset(name: string): void {
    const dir = (this.schema as Schema).datasetsDir;
    if (name !== "") this.values = { ...this.values, train_data_dir: `${dir}/${name}` };
  }

  private async start(): Promise<void> {
    try {
      await this.api.send("POST", "/api/jobs", { kind: "train", params: this.values });
      this.result = "Training job queued: see Runs.";
    } catch (err) {
      this.result = (err as Error).message;
    }
  }

  override render() {
    const s = this.schema;
    if (s === null) return html`<p class="muted">Loading the trainer's config schema…</p>`;
    const advanced = s.keys.filter((k) => !s.basic.includes(k));
    return html`
      ${s.engineAvailable ? nothing : html`<div class="banner engine-missing">The training engine is not available yet in this build: you can fill in and validate a config with the trainer's own checks; Start is disabled.</div>`}
      <div class="row">
        <label class="row">Dataset
          <select aria-label="use a dataset" @change=${(e: Event) => this.useDataset((e.target as HTMLSelectElement).value)}>
            <option value="">(choose)</option>
            ${this.datasets.map((d) => html`<option .value=${d}>${d}</option>`)}
          </select>
        </label>
        Preset:
        ${Object.entries(PRESETS).map(([name, p]) => html`<button @click=${() => (this.values = { ...this.values, ...p })}>${name}</button>`)}
      </div>
      <form @submit=${(e: Event) => e.preventDefault()}>${s.basic.map((k) => this.field(k))}</form>
      <details><summary>Advanced (${advanced.length} keys)</summary><form>${advanced.map((k) => this.field(k))}</form></details>
      <div class="row" style="margin-top:8px">
        <button @click=${() => this.validate()}>Validate</button>
        <button @click=${() => this.plan()}>Plan</button>
        <button class="primary" ?disabled=${!s.engineAvailable} @click=${() => this.start()}>Start training</button>
      </div>
      ${this.result ? html`<pre class="result">${this.result}</pre>` : nothing}
    `;
  }
}
customElements.define("ls-train-tab", TrainTab);
