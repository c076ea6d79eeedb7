#!/usr/bin/env node
// The `prompt-lora` command: runs the TypeScript CLI through tsx's loader (the package ships sources,
// no build step), with the user's arguments untouched.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
