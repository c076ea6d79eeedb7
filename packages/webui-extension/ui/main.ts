/**
 * Entry of javascript/lora-studio.js. In a WebUI: waits for onUiLoaded (A1111 / Forge call it once gradio
 * has rendered), finds the mount point our on_ui_tabs gr.HTML put in the page (inside gradioApp(), which
 * may be a shadow root) and reads the service URL and token from its data attributes. Standalone: the page
 * defines window.__LORA_STUDIO__ and the mount point.
 */
import type { StudioConfig } from "./api.ts";
import "./app.ts";

declare global {
  interface Window {
    __LORA_STUDIO__?: StudioConfig;
    onUiLoaded?: (cb: () => void) => void;
    gradioApp?: () => Document | ShadowRoot | HTMLElement;
  }
}

function findMount(): HTMLElement | null {
  const roots: Array<Document | ShadowRoot | HTMLElement> = [];
  if (typeof window.gradioApp === "function") roots.push(window.gradioApp());
  roots.push(document);
  for (const r of roots) {
    const el = r.querySelector<HTMLElement>("#lora-studio-root");
    if (el) return el;
  }
  return null;
}

function mount(): boolean {
  const el = findMount();
  if (el === null || el.querySelector("lora-studio-app")) return el !== null;
  const config: StudioConfig = window.__LORA_STUDIO__ ?? {
    service: el.dataset.service ?? "http://127.0.0.1:7870",
    token: el.dataset.token || null,
    standalone: false,
    problem: el.dataset.problem || undefined,
  };
  const app = document.createElement("lora-studio-app") as HTMLElement & { config: StudioConfig };
  app.config = config;
  el.append(app);
  return true;
}

if (typeof window.onUiLoaded === "function") {
  window.onUiLoaded(() => {
    if (mount()) return;
    // Gradio may render the tab's HTML later than onUiLoaded: watch for it.
    const obs = new MutationObserver(() => {
      if (mount()) obs.disconnect();
    });
    obs.observe(document.body, { childList: true, subtree: true });
  });
} else if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => mount());
} else {
  mount();
}
