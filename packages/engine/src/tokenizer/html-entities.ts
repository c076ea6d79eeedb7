// HTML entity decoding as ftfy's `unescape_html` step does it (the cleaning step CLIP's tokenizer runs on every
// prompt). Written by hand because Node has no HTML entity decoder and the package takes no runtime
// dependencies for a few dozen lines.
//
// Behaviour matched: only `&...;` forms with 1-24 alphanumerics (optionally `#`) are candidates; numeric
// references follow Python's html.unescape (C1 range read as Windows-1252, NUL/surrogates/out-of-range become
// U+FFFD, non-characters and most C0 controls are dropped); an all-uppercase name that is not itself an entity
// decodes to the upper-cased character of its lowercase form ("&EACUTE;" -> "É"), as ftfy does.
// Difference: ftfy knows all 2,231 HTML5 names; this table holds the ones people realistically type into a
// prompt (punctuation, quotes, symbols, Latin-1 letters). Unknown names are left exactly as written.

const NAMED: Record<string, string> = {
  amp: "&",
  AMP: "&",
  lt: "<",
  LT: "<",
  gt: ">",
  GT: ">",
  quot: '"',
  QUOT: '"',
  apos: "'",
  nbsp: "\u00a0",
  ensp: "\u2002",
  emsp: "\u2003",
  thinsp: "\u2009",
  hellip: "\u2026",
  mdash: "\u2014",
  ndash: "\u2013",
  lsquo: "\u2018",
  rsquo: "\u2019",
  sbquo: "\u201a",
  ldquo: "\u201c",
  rdquo: "\u201d",
  bdquo: "\u201e",
  laquo: "\u00ab",
  raquo: "\u00bb",
  lsaquo: "\u2039",
  rsaquo: "\u203a",
  prime: "\u2032",
  Prime: "\u2033",
  copy: "\u00a9",
  COPY: "\u00a9",
  reg: "\u00ae",
  REG: "\u00ae",
  trade: "\u2122",
  deg: "\u00b0",
  plusmn: "\u00b1",
  times: "\u00d7",
  divide: "\u00f7",
  middot: "\u00b7",
  bull: "\u2022",
  para: "\u00b6",
  sect: "\u00a7",
  cent: "\u00a2",
  pound: "\u00a3",
  euro: "\u20ac",
  yen: "\u00a5",
  micro: "\u00b5",
  frac12: "\u00bd",
  frac14: "\u00bc",
  frac34: "\u00be",
  sup1: "\u00b9",
  sup2: "\u00b2",
  sup3: "\u00b3",
  iexcl: "\u00a1",
  iquest: "\u00bf",
  shy: "\u00ad",
  macr: "\u00af",
  larr: "\u2190",
  rarr: "\u2192",
  uarr: "\u2191",
  darr: "\u2193",
  harr: "\u2194",
  hearts: "\u2665",
  spades: "\u2660",
  clubs: "\u2663",
  diams: "\u2666",
  szlig: "\u00df",
  AElig: "\u00c6",
  aelig: "\u00e6",
  ETH: "\u00d0",
  eth: "\u00f0",
  THORN: "\u00de",
  thorn: "\u00fe",
  Oslash: "\u00d8",
  oslash: "\u00f8",
  Aring: "\u00c5",
  aring: "\u00e5",
  Ccedil: "\u00c7",
  ccedil: "\u00e7",
};

// Latin-1 letters with a diacritic: entity name = base letter + accent name; both cases exist in HTML5.
const ACCENTED: Record<string, string> = {
  grave: "AaEeIiOoUu\u00c0\u00e0\u00c8\u00e8\u00cc\u00ec\u00d2\u00f2\u00d9\u00f9",
  acute: "AaEeIiOoUuYy\u00c1\u00e1\u00c9\u00e9\u00cd\u00ed\u00d3\u00f3\u00da\u00fa\u00dd\u00fd",
  circ: "AaEeIiOoUu\u00c2\u00e2\u00ca\u00ea\u00ce\u00ee\u00d4\u00f4\u00db\u00fb",
  tilde: "AaNnOo\u00c3\u00e3\u00d1\u00f1\u00d5\u00f5",
  uml: "AaEeIiOoUuy\u00c4\u00e4\u00cb\u00eb\u00cf\u00ef\u00d6\u00f6\u00dc\u00fc\u00ff",
};
for (const [accent, table] of Object.entries(ACCENTED)) {
  const half = table.length / 2;
  for (let i = 0; i < half; i++) NAMED[table[i] + accent] = table[half + i];
}

const ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;
// Windows-1252's characters for bytes 0x80-0x9F (undefined bytes stay as the C1 code point, as in Python's
// html module and ftfy's "sloppy" codec). Spelled out: Node 20's TextDecoder("windows-1252") returns "" here.
const WINDOWS_1252_C1 =
  "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f" +
  "\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";

/** The Windows-1252 reading of a C1 code point U+0080..U+009F. */
export function windows1252C1(cp: number): string {
  return WINDOWS_1252_C1[cp - 0x80];
}

/** Python's html._invalid_codepoints: decoded numeric references to these become "". */
function isDroppedCodepoint(cp: number): boolean {
  return (
    (cp >= 0x1 && cp <= 0x8) ||
    cp === 0xb ||
    (cp >= 0xe && cp <= 0x1f) ||
    (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) ||
    (cp & 0xfffe) === 0xfffe
  );
}

function decodeNumeric(body: string): string | undefined {
  let cp: number;
  if (/^#[xX][0-9a-fA-F]+$/.test(body)) cp = Number.parseInt(body.slice(2), 16);
  else if (/^#[0-9]+$/.test(body)) cp = Number.parseInt(body.slice(1), 10);
  else return undefined; // html.unescape would stop early and leave a ';' behind: ftfy keeps the text
  if (cp === 0) return "\ufffd";
  if (cp === 0x0d) return "\r";
  if (cp >= 0x80 && cp <= 0x9f) return windows1252C1(cp);
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return "\ufffd";
  if (isDroppedCodepoint(cp)) return "";
  return String.fromCodePoint(cp);
}

function decodeOne(entity: string): string {
  const body = entity.slice(1, -1);
  if (body.startsWith("#")) return decodeNumeric(body) ?? entity;
  const exact = NAMED[body];
  if (exact !== undefined) return exact;
  if (body === body.toUpperCase()) {
    const lower = NAMED[body.toLowerCase()];
    if (lower !== undefined) return lower.toUpperCase();
  }
  return entity;
}

/** Replaces HTML entities the way ftfy.fixes.unescape_html does (see the header for the table's scope). */
export function unescapeHtml(text: string): string {
  if (!text.includes("&")) return text;
  return text.replace(ENTITY_RE, decodeOne);
}
