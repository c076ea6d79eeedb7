/**
 * A small RFC 4180 CSV reader/writer for metadata.csv (`filename,prompt`). Hand-written because no CSV package
 * is a dependency of this project and the format needed is tiny: quoted fields with commas, doubled quotes and
 * line breaks inside, CRLF or LF row ends, an optional UTF-8 BOM. Errors name the file and line.
 */

export class CsvError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = "CsvError";
  }
}

/** Parses CSV text into rows of fields. A trailing row end does not produce an empty last row. */
export function parseCsv(text: string, file = "<csv>"): string[][] {
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let line = 1;
  let i = 0;
  let fieldStarted = false;
  const endField = () => {
    row.push(field);
    field = "";
    fieldStarted = false;
  };
  const endRow = () => {
    endField();
    rows.push(row);
    row = [];
  };
  while (i < s.length) {
    const c = s[i];
    if (c === '"' && !fieldStarted) {
      const quoteLine = line;
      i++;
      for (;;) {
        if (i >= s.length) throw new CsvError(file, quoteLine, "a quoted field is never closed");
        const q = s[i];
        if (q === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (q === "\n") line++;
        field += q;
        i++;
      }
      fieldStarted = true;
      const next = s[i];
      if (next !== undefined && next !== "," && next !== "\n" && next !== "\r") {
        throw new CsvError(file, line, `unexpected character ${JSON.stringify(next)} after a closing quote`);
      }
      continue;
    }
    if (c === ",") {
      endField();
      i++;
    } else if (c === "\r" && s[i + 1] === "\n") {
      endRow();
      line++;
      i += 2;
    } else if (c === "\n" || c === "\r") {
      endRow();
      line++;
      i++;
    } else {
      field += c;
      fieldStarted = true;
      i++;
    }
  }
  if (fieldStarted || row.length > 0) endRow();
  return rows;
}

/** Quotes a field only when it needs it (comma, quote, CR or LF, or leading/trailing space). */
export function formatCsvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** Rows to CSV text with CRLF row ends, as RFC 4180 specifies. */
export function formatCsv(rows: readonly (readonly string[])[]): string {
  return rows.map((r) => r.map(formatCsvField).join(",")).join("\r\n") + (rows.length > 0 ? "\r\n" : "");
}
