/**
 * `pnpm auto-label --input DIR [--captioner DIR] [--tagger DIR] [--output DIR/metadata.csv | --format txt]`:
 * captions for a folder of pictures from an image-to-text captioner, a WD14-style tagger, or both
 * ("caption, tag1, tag2"; see ../autolabel/run.ts). `--model` is the tagger's older spelling. A person's
 * captions are kept unless --overwrite; --dry-run shows the captions without writing; --json prints the whole
 * report on stdout. Unreadable pictures are listed; failures are one line on stderr (or {"error": ...} with
 * --json) and exit code 1.
 */
import cliProgress from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import { type AutoLabelEvent, type AutoLabelReport, autoLabel } from "../autolabel/run.ts";

interface CliOptions {
  input: string;
  model?: string;
  tagger?: string;
  captioner?: string;
  numBeams?: number;
  maxNewTokens?: number;
  minNewTokens?: number;
  blockRepeatNgrams?: number;
  repetitionPenalty?: number;
  output?: string;
  format: "csv" | "txt";
  captionExtension: string;
  prefix?: string;
  suffix?: string;
  generalThreshold: number;
  characterThreshold: number;
  includeRating?: boolean;
  maxTags?: number;
  exclude?: string;
  underscores: boolean;
  escapeParentheses: boolean;
  batchSize: number;
  size: number;
  channelOrder: "bgr" | "rgb";
  probabilities: "auto" | "model" | "sigmoid";
  provider: "cpu" | "webgpu" | "cuda" | "tensorrt" | "auto";
  threads?: number;
  overwrite?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

const probability = (v: string) => {
  const n = Number(v);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError("expected a number between 0 and 1");
  return n;
};
const positiveInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
};
const nonNegativeInt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected an integer >= 0");
  return n;
};
const penalty = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError("expected a positive number (1 = off)");
  return n;
};

export function buildProgram(run: (o: CliOptions) => Promise<void>): Command {
  return new Command("auto-label")
    .description(
      "Caption a folder of pictures with an image-to-text captioner (--captioner), a WD14-style tagger " +
        '(--tagger), or both: then each caption is "caption, tag1, tag2" (prefix first, suffix last)',
    )
    .requiredOption("--input <dir>", "folder of pictures (flat and/or kohya N_name folders)")
    .option(
      "--captioner <dir>",
      "captioner folder in the Hugging Face optimum ONNX layout: config.json, preprocessor_config.json, " +
        "tokenizer.json, onnx/encoder_model.onnx, onnx/decoder_model.onnx (e.g. a ViT-GPT2 export)",
    )
    .option("--tagger <dir>", "tagger folder with model.onnx and selected_tags.csv")
    .addOption(new Option("--model <dir>", "same as --tagger").hideHelp())
    .option("--num-beams <n>", "captioner: beam search width (1 = greedy; default: the model's)", positiveInt)
    .option(
      "--max-new-tokens <n>",
      "captioner: at most this many tokens (default: the model's max_length - 1)",
      positiveInt,
    )
    .option("--min-new-tokens <n>", "captioner: no end of caption before this many tokens", nonNegativeInt)
    .option(
      "--block-repeat-ngrams <n>",
      "captioner: never repeat an n-gram of this size (transformers' no_repeat_ngram_size; 0 = off)",
      nonNegativeInt,
    )
    .option("--repetition-penalty <x>", "captioner: penalty for tokens already used (1 = off)", penalty)
    .option("--output <file>", "metadata.csv to write (default: <input>/metadata.csv)")
    .addOption(
      new Option("--format <format>", "captions in one CSV or in sidecar files")
        .choices(["csv", "txt"])
        .default("csv"),
    )
    .option("--caption-extension <ext>", "sidecar extension with --format txt", ".txt")
    .option("--prefix <tags>", 'tags put first in every caption, e.g. "mystyle, ink wash"')
    .option("--suffix <tags>", "tags put last in every caption")
    .option("--general-threshold <p>", "minimum score of general tags", probability, 0.35)
    .option("--character-threshold <p>", "minimum score of character tags", probability, 0.85)
    .option("--include-rating", "add the most likely rating tag (excluded by default)")
    .option("--max-tags <n>", "at most this many model tags per caption", positiveInt)
    .option("--exclude <tags>", "comma-separated tags never to write")
    .option("--no-underscores", "keep underscores in tags (default: long_hair -> long hair, kaomoji kept)")
    .option("--no-escape-parentheses", "write ( ) as they are (default: \\( \\) for the WebUI prompt syntax)")
    .option("--batch-size <n>", "pictures per model run when the model allows a batch", positiveInt, 4)
    .option("--size <px>", "input size when the model does not fix it", positiveInt, 448)
    .addOption(
      new Option("--channel-order <order>", "colour order the model expects")
        .choices(["bgr", "rgb"])
        .default("bgr"),
    )
    .addOption(
      new Option("--probabilities <mode>", "sigmoid: model outputs logits; auto: detect")
        .choices(["auto", "model", "sigmoid"])
        .default("auto"),
    )
    .addOption(
      new Option("--provider <ep>", "execution provider")
        .choices(["cpu", "webgpu", "cuda", "tensorrt", "auto"])
        .default("cpu"),
    )
    .option("--threads <n>", "ONNX Runtime intra-op threads", positiveInt)
    .option("--overwrite", "also replace captions a person wrote or edited")
    .option("--dry-run", "show the captions, write nothing")
    .option("--json", "print the report as JSON on stdout")
    .exitOverride()
    .action(async (o: CliOptions) => run(o));
}

async function runCli(o: CliOptions): Promise<void> {
  let bar = process.stderr.isTTY && !o.json ? newBar() : undefined;
  const onEvent = (e: AutoLabelEvent) => {
    if (e.type === "start") {
      if (!o.json) {
        const kept = e.total - e.toLabel;
        process.stderr.write(
          `${e.total} pictures, ${e.toLabel} to label${kept > 0 ? `, ${kept} hand-written captions kept (--overwrite replaces them)` : ""}\n`,
        );
      }
      bar?.start(e.toLabel, 0);
    } else if (e.type === "progress") bar?.update(e.done);
    else if (e.type === "warning") {
      // A warning ends the bar rather than being overdrawn by it.
      bar?.stop();
      bar = undefined;
      process.stderr.write(`warning: ${e.message}\n`);
    }
  };
  if (o.tagger !== undefined && o.model !== undefined && o.tagger !== o.model)
    throw new Error("--model is the older name of --tagger: give one of them");
  const tagger = o.tagger ?? o.model;
  if (tagger === undefined && o.captioner === undefined)
    throw new Error("give --captioner DIR, --tagger DIR, or both (see --help)");
  let report: AutoLabelReport;
  try {
    report = await autoLabel(
      {
        input: o.input,
        model: tagger,
        captioner: o.captioner,
        captionerOptions: {
          generation: {
            numBeams: o.numBeams,
            maxNewTokens: o.maxNewTokens,
            minNewTokens: o.minNewTokens,
            noRepeatNgramSize: o.blockRepeatNgrams,
            repetitionPenalty: o.repetitionPenalty,
          },
          batchSize: o.batchSize,
          executionProvider: o.provider,
          threads: o.threads,
        },
        format: o.format,
        output: o.output,
        captionExtension: o.captionExtension.startsWith(".") ? o.captionExtension : `.${o.captionExtension}`,
        prefix: o.prefix,
        suffix: o.suffix,
        overwrite: o.overwrite,
        dryRun: o.dryRun,
        tags: {
          generalThreshold: o.generalThreshold,
          characterThreshold: o.characterThreshold,
          includeRating: o.includeRating ?? false,
          maxTags: o.maxTags,
          exclude: (o.exclude ?? "")
            .split(",")
            .map((t) => t.trim())
            .filter(Boolean),
          replaceUnderscores: o.underscores,
          escapeParentheses: o.escapeParentheses,
        },
        tagger: {
          batchSize: o.batchSize,
          fallbackSize: o.size,
          channelOrder: o.channelOrder,
          probabilities: o.probabilities,
          executionProvider: o.provider,
          threads: o.threads,
        },
      },
      onEvent,
    );
  } finally {
    bar?.stop();
  }
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
}

function newBar(): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    {
      format: "{bar} {value}/{total} pictures | {eta_formatted} left",
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
}

export function formatReport(r: AutoLabelReport): string {
  const lines: string[] = [];
  const m = r.model;
  const c = r.captioner;
  if (c) {
    const decoding = c.numBeams > 1 ? `beam search ${c.numBeams}` : "greedy";
    lines.push(
      `captioner: ${c.path} (${c.modelType}, ${c.width}x${c.height}px, ${decoding}, <= ${c.maxNewTokens} tokens, ${c.decoderKind} decoder${c.kvCache ? " + KV cache" : ""}, ${c.provider})`,
    );
  }
  if (m)
    lines.push(
      `tagger: ${m.path} (${m.layout} ${m.size}px, ${m.tags} tags, batch ${m.batch}, ${m.provider})`,
    );
  for (const img of r.images) {
    const what =
      img.action === "failed"
        ? img.error
        : img.action === "kept"
          ? "(hand-written caption kept)"
          : img.caption;
    lines.push(`${img.action.padEnd(11)} ${img.image}: ${what}`);
  }
  for (const s of r.skippedFiles) lines.push(`skipped     ${s.path}: ${s.reason}`);
  const n = r.counts;
  lines.push(
    `${r.dryRun ? "dry run, nothing written; would have: " : `${r.target}: `}` +
      `${n.written} new, ${n.replaced} replaced, ${n.overwritten} overwritten, ${n.unchanged} unchanged, ` +
      `${n.kept} kept, ${n.failed} failed`,
  );
  const failed = r.images.filter((img) => img.action === "failed");
  if (failed.length > 0)
    lines.push(`failed pictures (listed above): ${failed.map((f) => f.image).join(", ")}`);
  return `${lines.join("\n")}\n`;
}

export async function main(argv: string[]): Promise<number> {
  // `pnpm auto-label` runs in the repository root; paths the user typed are relative to INIT_CWD.
  if (process.env.npm_lifecycle_event === "auto-label" && process.env.INIT_CWD)
    process.chdir(process.env.INIT_CWD);
  const json = argv.includes("--json");
  try {
    await buildProgram(runCli).parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    const exit = (err as { exitCode?: number; code?: string }).exitCode;
    if (exit !== undefined && (err as { code?: string }).code?.startsWith("commander.")) return exit;
    const message = (err as Error).message;
    process.stderr.write(json ? `${JSON.stringify({ error: message })}\n` : `error: ${message}\n`);
    return 1;
  }
}

if (process.argv[1]?.endsWith("cli/auto-label.ts")) {
  main(process.argv.slice(2)).then((c) => process.exit(c));
}
