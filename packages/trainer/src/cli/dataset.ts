/**
 * `pnpm dataset check DIR [--resolution 512] [--caption-extension .txt] [--contact-sheet FILE]`: the data-quality
 * checks of the LoRA guides (trainer-data's datasetCheck) as a table on stdout plus a contact sheet PNG.
 */
import { Command } from "commander";
import { datasetCheck, formatCheckTable } from "../dataset/check.ts";

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command().name("dataset").description("Dataset tools").exitOverride();
  program
    .command("check")
    .argument("<dir>", "folder of training pictures")
    .option("--resolution <px>", "training resolution", "512")
    .option("--caption-extension <ext>", "caption sidecar extension", ".txt")
    .option("--contact-sheet <file>", "where to write the contact sheet PNG")
    .action(
      async (dir: string, o: { resolution: string; captionExtension: string; contactSheet?: string }) => {
        const result = await datasetCheck(dir, {
          resolution: Number(o.resolution),
          captionExtension: o.captionExtension.startsWith(".")
            ? o.captionExtension
            : `.${o.captionExtension}`,
          contactSheetPath: o.contactSheet,
        });
        process.stdout.write(`${formatCheckTable(result)}\n`);
      },
    );
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    const exit = (err as { exitCode?: number }).exitCode;
    if (exit !== undefined) return exit;
    process.stderr.write(`error: ${(err as Error).message}\n`);
    code = 1;
  }
  return code;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("cli/dataset.ts")) {
  main(process.argv.slice(2)).then((c) => process.exit(c));
}
