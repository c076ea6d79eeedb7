"""lora-studio tab for AUTOMATIC1111-style WebUIs (A1111, Forge, SD.Next).

Only registers an empty tab whose gr.HTML holds the mount point of the lit UI (javascript/lora-studio.js,
loaded by the WebUI like every extension script). No third-party imports: nothing is installed into the
WebUI's venv. The UI talks to the Node service (`pnpm serve --webui-dir <this WebUI>`) on 127.0.0.1:7870.

The page learns the service URL and the token from data attributes of the mount point: the token is read
from the service's data folder (LORA_STUDIO_HOME, default ~/.lora-studio/token). Anyone who can open this
WebUI page can read it, which matches what they can already do in the WebUI; do not share a WebUI launched
with --share/--listen with people you would not give the token to.

Optional: LORA_STUDIO_AUTOSTART=1 and LORA_STUDIO_REPO=/path/to/lora-studio start the service as a
subprocess when nothing answers on the port.
"""
import html
import os
import shutil
import subprocess
import urllib.request

import gradio as gr  # provided by the WebUI
from modules import script_callbacks  # provided by the WebUI

SERVICE_URL = os.environ.get("LORA_STUDIO_URL", "http://127.0.0.1:7870")
DATA_DIR = os.environ.get("LORA_STUDIO_HOME", os.path.join(os.path.expanduser("~"), ".lora-studio"))


def _service_running():
    try:
        with urllib.request.urlopen(SERVICE_URL + "/api/health", timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def _maybe_start_service():
    repo = os.environ.get("LORA_STUDIO_REPO")
    if os.environ.get("LORA_STUDIO_AUTOSTART") != "1" or not repo or _service_running():
        return None
    pnpm = shutil.which("pnpm")
    if pnpm is None:
        return "pnpm was not found on PATH: install Node 20 and pnpm, then run `pnpm serve` in " + repo
    webui_dir = os.getcwd()
    subprocess.Popen([pnpm, "serve", "--webui-dir", webui_dir], cwd=repo, start_new_session=True)
    return None


def _read_token():
    try:
        with open(os.path.join(DATA_DIR, "token"), "r", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def on_ui_tabs():
    problem = _maybe_start_service() or ""
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.HTML(
            '<div id="lora-studio-root" data-service="{}" data-token="{}" data-problem="{}"></div>'.format(
                html.escape(SERVICE_URL), html.escape(_read_token()), html.escape(problem)
            )
        )
    return [(tab, "LoRA Studio", "lora_studio")]


script_callbacks.on_ui_tabs(on_ui_tabs)
