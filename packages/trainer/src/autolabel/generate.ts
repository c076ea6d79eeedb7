/**
 * Token-by-token decoding for encoder-decoder captioners, independent of ONNX: the caller hands a function that
 * returns the next-token logits of a batch of sequences. Follows transformers' `generate` for these models:
 *
 * - greedy (`numBeams` 1): the logits processors act on the raw logits, then argmax;
 * - beam search: log-softmax, then the processors, each beam's scores added to its running sum; the best
 *   2 x numBeams candidates across the beams are visited in order; an EOS candidate among the first numBeams
 *   becomes a finished hypothesis scored sum / generatedLength^lengthPenalty (generatedLength counts the new
 *   tokens, EOS included); the others fill the next beams. A picture is done when it has numBeams finished
 *   hypotheses and (earlyStopping, or) no running beam can still beat the worst of them; at the length limit
 *   the running beams are finished as they are. The best hypothesis wins;
 * - processors: `repetitionPenalty` (a token already in the sequence, start token included: positive scores
 *   divided by the penalty, negative ones multiplied), `noRepeatNgramSize` (a token that would repeat an
 *   n-gram of the sequence is banned), `minNewTokens` (EOS banned before that many new tokens);
 * - lengths: `maxNewTokens`, else `maxLength` - 1 (transformers' max_length counts the decoder start token).
 */
export interface GenerationOptions {
  /** Total decoder length with the start token, as transformers' max_length. Default 20. */
  maxLength: number;
  /** New tokens at most; overrides maxLength when set. */
  maxNewTokens?: number;
  /** EOS is not allowed before this many new tokens. Default 0. */
  minNewTokens: number;
  /** 1: greedy. */
  numBeams: number;
  lengthPenalty: number;
  earlyStopping: boolean;
  /** 0: off. */
  noRepeatNgramSize: number;
  /** 1: off. */
  repetitionPenalty: number;
}

export const DEFAULT_GENERATION: GenerationOptions = {
  maxLength: 20,
  minNewTokens: 0,
  numBeams: 1,
  lengthPenalty: 1,
  earlyStopping: false,
  noRepeatNgramSize: 0,
  repetitionPenalty: 1,
};

export interface DecodeRow {
  /** Which picture (encoder output) this sequence belongs to. */
  source: number;
  /** The sequence so far, starting with the decoder start token. */
  ids: readonly number[];
}

/** Next-token logits (vocabulary-sized) of each row. */
export type NextTokenLogits = (rows: DecodeRow[]) => Promise<Float32Array[]>;

export interface Generated {
  /** New tokens, without the start token and without the final EOS. */
  tokens: number[];
  /** Greedy: sum of log-probabilities; beam search: the length-normalised hypothesis score. */
  score: number;
  /** Whether the sequence ended with EOS (false: cut at the length limit). */
  finished: boolean;
}

export function maxNewTokensOf(o: GenerationOptions): number {
  return Math.max(1, o.maxNewTokens ?? o.maxLength - 1);
}

export async function generate(
  sources: number,
  special: { decoderStart: number; eos: readonly number[] },
  opts: GenerationOptions,
  next: NextTokenLogits,
): Promise<Generated[]> {
  if (!(opts.numBeams >= 1 && Number.isInteger(opts.numBeams)))
    throw new Error("numBeams must be a positive integer");
  return opts.numBeams === 1
    ? greedy(sources, special, opts, next)
    : beamSearch(sources, special, opts, next);
}

async function greedy(
  sources: number,
  special: { decoderStart: number; eos: readonly number[] },
  opts: GenerationOptions,
  next: NextTokenLogits,
): Promise<Generated[]> {
  const seqs = Array.from({ length: sources }, () => [special.decoderStart]);
  const out: Generated[] = seqs.map(() => ({ tokens: [], score: 0, finished: false }));
  const limit = maxNewTokensOf(opts);
  for (let step = 0; step < limit; step++) {
    const active = out.flatMap((g, i) => (g.finished ? [] : [i]));
    if (active.length === 0) break;
    const logits = await next(active.map((i) => ({ source: i, ids: seqs[i] })));
    active.forEach((i, r) => {
      const scores = logits[r].slice();
      process(scores, seqs[i], step, special.eos, opts);
      const token = argmax(scores);
      out[i].score += logSoftmaxAt(logits[r], token);
      seqs[i].push(token);
      if (special.eos.includes(token)) out[i].finished = true;
      else out[i].tokens.push(token);
    });
  }
  return out;
}

interface Beam {
  ids: number[];
  sum: number;
}

interface Hypotheses {
  list: { ids: number[]; score: number; finished: boolean }[];
  done: boolean;
}

async function beamSearch(
  sources: number,
  special: { decoderStart: number; eos: readonly number[] },
  opts: GenerationOptions,
  next: NextTokenLogits,
): Promise<Generated[]> {
  const k = opts.numBeams;
  const limit = maxNewTokensOf(opts);
  // One beam to start with: transformers starts k copies, all but one at -1e9, which is the same thing.
  let beams: Beam[][] = Array.from({ length: sources }, () => [{ ids: [special.decoderStart], sum: 0 }]);
  const hyps: Hypotheses[] = beams.map(() => ({ list: [], done: false }));
  const add = (h: Hypotheses, ids: number[], sum: number, length: number, finished: boolean) => {
    h.list.push({ ids, score: sum / length ** opts.lengthPenalty, finished });
    h.list.sort((a, b) => b.score - a.score);
    if (h.list.length > k) h.list.pop();
  };

  for (let step = 0; step < limit; step++) {
    const rows: DecodeRow[] = [];
    beams.forEach((bs, s) => {
      if (!hyps[s].done) for (const b of bs) rows.push({ source: s, ids: b.ids });
    });
    if (rows.length === 0) break;
    const logits = await next(rows);
    let r = 0;
    beams = beams.map((bs, s) => {
      const h = hyps[s];
      if (h.done) return bs;
      // Best 2k (beam, token) candidates over all beams of this picture.
      const cands: { beam: number; token: number; sum: number }[] = [];
      bs.forEach((b, bi) => {
        const scores = logSoftmax(logits[r++]);
        process(scores, b.ids, step, special.eos, opts);
        for (const [token, v] of topK(scores, 2 * k)) cands.push({ beam: bi, token, sum: b.sum + v });
      });
      cands.sort((a, b) => b.sum - a.sum);
      const nextBeams: Beam[] = [];
      for (const [rank, c] of cands.slice(0, 2 * k).entries()) {
        if (!Number.isFinite(c.sum)) break;
        if (special.eos.includes(c.token)) {
          if (rank < k) add(h, bs[c.beam].ids, c.sum, step + 1, true);
        } else nextBeams.push({ ids: [...bs[c.beam].ids, c.token], sum: c.sum });
        if (nextBeams.length === k) break;
      }
      if (h.list.length >= k) {
        const worst = h.list[h.list.length - 1].score;
        const bestRunning =
          nextBeams.length > 0 ? nextBeams[0].sum / (step + 1) ** opts.lengthPenalty : -Infinity;
        if (opts.earlyStopping || worst >= bestRunning) h.done = true;
      }
      if (nextBeams.length === 0) h.done = true;
      return nextBeams;
    });
  }
  beams.forEach((bs, s) => {
    if (hyps[s].done) return;
    for (const b of bs) add(hyps[s], b.ids, b.sum, b.ids.length - 1, false);
  });
  return hyps.map((h) => {
    const best = h.list[0];
    if (!best) return { tokens: [], score: -Infinity, finished: false };
    return { tokens: best.ids.slice(1), score: best.score, finished: best.finished };
  });
}

/** The logits processors, in transformers' order: repetition penalty, n-gram ban, minimum length. */
function process(
  scores: Float32Array,
  seq: readonly number[],
  step: number,
  eos: readonly number[],
  o: GenerationOptions,
): void {
  if (o.repetitionPenalty !== 1) {
    for (const t of new Set(seq)) {
      if (t < 0 || t >= scores.length) continue;
      scores[t] = scores[t] < 0 ? scores[t] * o.repetitionPenalty : scores[t] / o.repetitionPenalty;
    }
  }
  const n = o.noRepeatNgramSize;
  if (n > 0 && seq.length + 1 >= n) {
    const tail = seq.slice(seq.length - (n - 1));
    for (let i = 0; i + n <= seq.length; i++) {
      let match = true;
      for (let j = 0; j < n - 1 && match; j++) match = seq[i + j] === tail[j];
      if (match) scores[seq[i + n - 1]] = -Infinity;
    }
  }
  if (step < o.minNewTokens) for (const e of eos) if (e >= 0 && e < scores.length) scores[e] = -Infinity;
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

// Indexed loops: iterating a 50k-entry Float32Array with for-of is several times slower.
function logSumExp(v: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) if (v[i] > max) max = v[i];
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += Math.exp(v[i] - max);
  return max + Math.log(sum);
}

function logSoftmax(v: Float32Array): Float32Array {
  const lse = logSumExp(v);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] - lse;
  return out;
}

function logSoftmaxAt(v: Float32Array, i: number): number {
  return v[i] - logSumExp(v);
}

/** The k largest entries (index, value), largest first; -Infinity entries are left out. */
export function topK(v: Float32Array, k: number): [number, number][] {
  const best: [number, number][] = [];
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x === -Infinity || (best.length === k && x <= best[k - 1][1])) continue;
    let j = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push([i, x]);
    while (j > 0 && best[j - 1][1] < x) {
      best[j] = best[j - 1];
      j--;
    }
    best[j] = [i, x];
  }
  return best;
}
