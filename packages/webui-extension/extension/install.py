# lora-studio installs nothing into the WebUI's Python environment: the training and the Lora management
# run in the separate Node service (`pnpm serve`). This file exists so the WebUI's extension installer finds
# nothing to do and never touches the venv.
