/** Conv, ConvTranspose (explicit pads, strides, dilations, group, output_padding) and nearest Resize by scales. */
import { attr, builderOf } from "../builder.ts";
import type { Attribute, Value } from "../ir.ts";
import { requireFloat } from "./common.ts";

export interface ConvOptions {
  strides?: number[];
  /** [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as in ONNX. Default all 0. */
  pads?: number[];
  dilations?: number[];
  group?: number;
}

export interface ConvTransposeOptions extends ConvOptions {
  outputPadding?: number[];
}

interface ConvGeometry {
  strides: number[];
  pads: number[];
  dilations: number[];
  group: number;
  attrs: Record<string, Attribute>;
}

function geometry(op: string, x: Value, w: Value, inputs: Value[], opts: ConvOptions): ConvGeometry {
  const b = builderOf(x);
  const sp = x.shape.length - 2;
  if (sp < 1) b.fail(op, inputs, "X must be [N, C, spatial...]");
  if (w.shape.length !== x.shape.length) b.fail(op, inputs, `W must have rank ${x.shape.length}`);
  const strides = opts.strides ?? new Array(sp).fill(1);
  const dilations = opts.dilations ?? new Array(sp).fill(1);
  const pads = opts.pads ?? new Array(2 * sp).fill(0);
  const group = opts.group ?? 1;
  if (strides.length !== sp || dilations.length !== sp || pads.length !== 2 * sp) {
    b.fail(op, inputs, `strides/dilations need ${sp} entries and pads ${2 * sp}`);
  }
  if (![...strides, ...dilations].every((v) => Number.isInteger(v) && v >= 1)) {
    b.fail(op, inputs, "strides and dilations must be positive integers");
  }
  if (!pads.every((p) => Number.isInteger(p) && p >= 0))
    b.fail(op, inputs, "pads must be non-negative integers");
  const kernel = w.shape.slice(2);
  const attrs: Record<string, Attribute> = {
    kernel_shape: attr.ints([...kernel]),
    strides: attr.ints(strides),
    pads: attr.ints(pads),
    dilations: attr.ints(dilations),
    group: attr.int(group),
  };
  return { strides, pads, dilations, group, attrs };
}

/** Conv: X [N, C, ...], W [M, C/group, k...], optional B [M]. */
export function conv(x: Value, w: Value, bias?: Value, opts: ConvOptions = {}): Value {
  const b = builderOf(x, w, bias);
  const inputs = bias ? [x, w, bias] : [x, w];
  const dtype = requireFloat(b, "Conv", inputs);
  const g = geometry("Conv", x, w, inputs, opts);
  const m = w.shape[0];
  if (x.shape[1] !== w.shape[1] * g.group) {
    b.fail("Conv", inputs, `X has ${x.shape[1]} channels but W expects ${w.shape[1]} x group ${g.group}`);
  }
  if (m % g.group !== 0) b.fail("Conv", inputs, `output channels ${m} not divisible by group ${g.group}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== m)) b.fail("Conv", inputs, `B must be [${m}]`);
  const sp = x.shape.length - 2;
  const spatial: number[] = [];
  for (let i = 0; i < sp; i++) {
    const eff = g.dilations[i] * (w.shape[2 + i] - 1) + 1;
    const padded = x.shape[2 + i] + g.pads[i] + g.pads[i + sp];
    const o = Math.floor((padded - eff) / g.strides[i]) + 1;
    if (padded < eff)
      b.fail("Conv", inputs, `kernel extent ${eff} exceeds padded input ${padded} on spatial axis ${i}`);
    spatial.push(o);
  }
  return b.addNode("Conv", inputs, g.attrs, [{ dtype, shape: [x.shape[0], m, ...spatial] }])[0];
}

/** ConvTranspose: X [N, C, ...], W [C, M/group, k...], optional B [M]; output_padding adds on the end side. */
export function convTranspose(x: Value, w: Value, bias?: Value, opts: ConvTransposeOptions = {}): Value {
  const b = builderOf(x, w, bias);
  const inputs = bias ? [x, w, bias] : [x, w];
  const dtype = requireFloat(b, "ConvTranspose", inputs);
  const g = geometry("ConvTranspose", x, w, inputs, opts);
  const sp = x.shape.length - 2;
  const outPad = opts.outputPadding ?? new Array(sp).fill(0);
  if (outPad.length !== sp) b.fail("ConvTranspose", inputs, `output_padding needs ${sp} entries`);
  outPad.forEach((p, i) => {
    if (p < 0 || (p >= g.strides[i] && p >= g.dilations[i])) {
      b.fail(
        "ConvTranspose",
        inputs,
        `output_padding ${p} must be smaller than stride or dilation on axis ${i}`,
      );
    }
  });
  if (x.shape[1] !== w.shape[0])
    b.fail("ConvTranspose", inputs, `X has ${x.shape[1]} channels, W has ${w.shape[0]}`);
  const m = w.shape[1] * g.group;
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== m))
    b.fail("ConvTranspose", inputs, `B must be [${m}]`);
  const spatial: number[] = [];
  for (let i = 0; i < sp; i++) {
    const eff = g.dilations[i] * (w.shape[2 + i] - 1) + 1;
    const o = g.strides[i] * (x.shape[2 + i] - 1) + outPad[i] + eff - g.pads[i] - g.pads[i + sp];
    if (o < 1) b.fail("ConvTranspose", inputs, `output size ${o} on spatial axis ${i} is not positive`);
    spatial.push(o);
  }
  const attrs = { ...g.attrs, output_padding: attr.ints(outPad) };
  return b.addNode("ConvTranspose", inputs, attrs, [{ dtype, shape: [x.shape[0], m, ...spatial] }])[0];
}

export interface ResizeOptions {
  /** Default "asymmetric" + "floor": PyTorch's F.interpolate(mode="nearest"). */
  coordinateTransformationMode?: "asymmetric" | "half_pixel" | "align_corners" | "pytorch_half_pixel";
  nearestMode?: "floor" | "round_prefer_floor" | "round_prefer_ceil" | "ceil";
}

/** Nearest-neighbour Resize by per-axis scales (one per dimension, e.g. [1, 1, 2, 2]); output = floor(in*scale). */
export function resizeNearest(x: Value, scales: number[], opts: ResizeOptions = {}): Value {
  const b = builderOf(x);
  if (scales.length !== x.shape.length)
    b.fail("Resize", [x], `needs ${x.shape.length} scales, got ${scales.length}`);
  if (!scales.every((s) => s > 0))
    b.fail("Resize", [x], `scales must be positive, got [${scales.join(",")}]`);
  const shape = x.shape.map((d, i) => Math.floor(d * scales[i]));
  const scaleConst = b.constant(scales, "float32", [scales.length]);
  const attrs = {
    mode: attr.string("nearest"),
    coordinate_transformation_mode: attr.string(opts.coordinateTransformationMode ?? "asymmetric"),
    nearest_mode: attr.string(opts.nearestMode ?? "floor"),
  };
  return b.addNode("Resize", [x, undefined, scaleConst], attrs, [{ dtype: x.dtype, shape }])[0];
}
