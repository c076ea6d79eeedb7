/**
 * target_modules (`["to_q", "to_v"]`, peft style) as a predicate on diffusers module paths. A target matches a
 * path when it equals the path or is a whole-segment suffix of it: "to_q" matches
 * "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" but not "...attn1.to_q_extra"; "to_out.0"
 * matches "...attn1.to_out.0". A target wrapped in slashes ("/attn2\\.to_(k|v)$/") is a regular expression
 * tested against the whole path, for the rare case suffixes cannot express.
 */

export type ModulePredicate = (path: string) => boolean;

export function targetModulePredicate(targets: readonly string[]): ModulePredicate {
  const suffixes: string[] = [];
  const patterns: RegExp[] = [];
  for (const t of targets) {
    if (t.length > 2 && t.startsWith("/") && t.endsWith("/")) patterns.push(new RegExp(t.slice(1, -1)));
    else suffixes.push(t);
  }
  return (path) =>
    suffixes.some((s) => path === s || path.endsWith(`.${s}`)) || patterns.some((re) => re.test(path));
}
