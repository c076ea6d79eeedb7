/** Shared styles: theme colors as custom properties switched by the host's `theme` attribute. */
import { css } from "lit";

export const shared = css`
  :host {
    --ls-bg: #ffffff;
    --ls-panel: #f4f5f7;
    --ls-border: #d0d4da;
    --ls-text: #1f2328;
    --ls-muted: #656d76;
    --ls-accent: #e8590c;
    --ls-danger: #cf222e;
    color: var(--ls-text);
    font: 14px/1.4 system-ui, sans-serif;
  }
  :host([theme="dark"]) {
    --ls-bg: #0b0f19;
    --ls-panel: #1f2937;
    --ls-border: #374151;
    --ls-text: #e5e7eb;
    --ls-muted: #9ca3af;
    --ls-accent: #f97316;
    --ls-danger: #f87171;
  }
  button {
    font: inherit;
    padding: 4px 10px;
    border: 1px solid var(--ls-border);
    border-radius: 6px;
    background: var(--ls-panel);
    color: var(--ls-text);
    cursor: pointer;
  }
  button.primary {
    background: var(--ls-accent);
    border-color: var(--ls-accent);
    color: #fff;
  }
  button:disabled {
    opacity: 0.5;
    cursor: default;
  }
  button:focus-visible,
  input:focus-visible,
  textarea:focus-visible,
  select:focus-visible {
    outline: 2px solid var(--ls-accent);
    outline-offset: 1px;
  }
  input,
  textarea,
  select {
    font: inherit;
    color: var(--ls-text);
    background: var(--ls-bg);
    border: 1px solid var(--ls-border);
    border-radius: 6px;
    padding: 4px 6px;
    box-sizing: border-box;
  }
  .muted {
    color: var(--ls-muted);
  }
  .error {
    color: var(--ls-danger);
  }
  .row {
    display: flex;
    gap: 8px;
    align-items: center;
    flex-wrap: wrap;
  }
  .banner {
    padding: 8px 12px;
    border: 1px solid var(--ls-border);
    border-left: 4px solid var(--ls-accent);
    background: var(--ls-panel);
    border-radius: 6px;
    margin: 8px 0;
  }
`;
