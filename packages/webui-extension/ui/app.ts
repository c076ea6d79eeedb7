/** <lora-studio-app>: the four tabs, the connection status, and the host's theme followed live. */
import { css, html, LitElement, nothing } from "lit";
import { EventSocket, StudioApi, type StudioConfig } from "./api.ts";
import "./datasets-tab.ts";
import "./generate-tab.ts";
import "./library-tab.ts";
import "./runs-tab.ts";
import "./train-tab.ts";
import { shared } from "./styles.ts";

const TABS = ["Datasets", "Train", "Runs", "Library", "Generate"] as const;
type Tab = (typeof TABS)[number];

/** Gradio puts `.dark` on body (A1111, Forge); standalone follows the system setting. */
export function hostIsDark(): boolean {
  if (document.body.classList.contains("dark") || document.documentElement.classList.contains("dark"))
    return true;
  if (document.body.classList.contains("lora-studio-standalone"))
    return matchMedia("(prefers-color-scheme: dark)").matches;
  return false;
}

export class LoraStudioApp extends LitElement {
  static override properties = {
    config: { attribute: false },
    tab: { state: true },
    connection: { state: true },
    focusJob: { state: true },
  };
  /** The job the Runs tab opens on (set when the Train tab starts one). */
  declare focusJob: string | null;
  declare config: StudioConfig;
  declare tab: Tab;
  declare connection: string;
  api!: StudioApi;
  socket!: EventSocket;

  constructor() {
    super();
    this.tab = "Library";
    this.connection = "connecting";
    this.focusJob = null;
    this.addEventListener("ls-open-job", (e) => {
      this.focusJob = (e as CustomEvent<{ id: string }>).detail.id;
      this.tab = "Runs";
    });
  }

  static override styles = [
    shared,
    css`
      :host { display: block; background: var(--ls-bg); padding: 10px; border-radius: 8px; }
      nav { display: flex; gap: 4px; border-bottom: 1px solid var(--ls-border); margin-bottom: 10px; }
      nav button { border-radius: 6px 6px 0 0; border-bottom: none; }
      nav button[aria-selected="true"] { background: var(--ls-accent); color: #fff; border-color: var(--ls-accent); }
      .status { margin-left: auto; font-size: 12px; align-self: center; }
      section { min-height: 400px; }
    `,
  ];

  override connectedCallback(): void {
    super.connectedCallback();
    this.api = new StudioApi(this.config);
    this.socket = new EventSocket(this.api);
    this.socket.addEventListener("status", (e) => {
      this.connection = (e as CustomEvent).detail;
    });
    if (this.config.token) this.socket.connect();
    const applyTheme = () => this.setAttribute("theme", hostIsDark() ? "dark" : "light");
    applyTheme();
    new MutationObserver(applyTheme).observe(document.body, { attributes: true, attributeFilter: ["class"] });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  }

  private setToken(): void {
    const input = this.renderRoot.querySelector<HTMLInputElement>("#token");
    if (!input?.value) return;
    this.config = { ...this.config, token: input.value.trim() };
    this.api.config = this.config;
    this.socket.connect();
    this.requestUpdate();
  }

  /** Generate (txt2img) only standalone: inside a WebUI the host's own txt2img tab does that. */
  private get tabs(): readonly Tab[] {
    return this.config.standalone ? TABS : TABS.filter((t) => t !== "Generate");
  }

  private keyNav(e: KeyboardEvent): void {
    const tabs = this.tabs;
    const i = tabs.indexOf(this.tab);
    if (e.key === "ArrowRight") this.tab = tabs[(i + 1) % tabs.length];
    else if (e.key === "ArrowLeft") this.tab = tabs[(i + tabs.length - 1) % tabs.length];
    else return;
    (this.renderRoot.querySelector(`nav button[data-tab="${this.tab}"]`) as HTMLElement | null)?.focus();
  }

  private renderTab() {
    const theme = this.getAttribute("theme") ?? "light";
    switch (this.tab) {
      case "Datasets":
        return html`<ls-datasets-tab theme=${theme} .api=${this.api} .socket=${this.socket}></ls-datasets-tab>`;
      case "Train":
        return html`<ls-train-tab theme=${theme} .api=${this.api}></ls-train-tab>`;
      case "Runs":
        return html`<ls-runs-tab theme=${theme} .api=${this.api} .socket=${this.socket} .focusJob=${this.focusJob}></ls-runs-tab>`;
      case "Library":
        return html`<ls-library-tab theme=${theme} .api=${this.api} .socket=${this.socket}></ls-library-tab>`;
      case "Generate":
        return html`<ls-generate-tab theme=${theme} .api=${this.api} .socket=${this.socket}></ls-generate-tab>`;
    }
  }

  override render() {
    const c = this.config;
    if (c.problem) return html`<div class="banner error">${c.problem}</div>`;
    if (!c.token || this.connection === "unauthorized") {
      return html`<div class="banner">
        <p>${this.connection === "unauthorized" ? "The token was refused." : "This page needs the service's token."}
        Copy it from <code>~/.lora-studio/token</code> on the machine running <code>pnpm serve</code>.</p>
        <div class="row"><input id="token" aria-label="token" size="40" /><button @click=${() => this.setToken()}>Connect</button></div>
      </div>`;
    }
    return html`
      <nav role="tablist" @keydown=${(e: KeyboardEvent) => this.keyNav(e)}>
        ${this.tabs.map((t) => html`<button role="tab" data-tab=${t} aria-selected=${t === this.tab ? "true" : "false"} tabindex=${t === this.tab ? 0 : -1} @click=${() => (this.tab = t)}>${t}</button>`)}
        <span class="status muted" role="status">service: ${this.connection}</span>
      </nav>
      ${this.connection === "closed" ? html`<div class="banner">The service at ${c.service || location.origin} is not answering. Start it with <code>pnpm serve</code> (add <code>--webui-dir PATH</code> to manage this WebUI's Lora folder).</div>` : nothing}
      <section role="tabpanel">${this.renderTab()}</section>
    `;
  }
}
customElements.define("lora-studio-app", LoraStudioApp);
