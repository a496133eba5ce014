/**
 * Capture and replay (in the spirit of CUDA graphs and tinygrad's TinyJit): a step function
 * whose commands depend only on its input shapes is recorded once — pipelines, bind groups,
 * grids, copies, uploads — and later calls with the same shapes re-encode those commands with
 * no op code, no tensor bookkeeping and no plan lookups.
 *
 * Calls per input key (shapes): call 1 runs eagerly (lazy state such as optimizer moments and
 * pipelines get created), call 2 records, call 3 records again and must match call 2 command
 * for command (else the key falls back to eager for good, with a reason), calls 4+ replay.
 *
 * What a replay needs from the step:
 * - Per-call host data goes up through `tensor(inputArray)` (refilled from the new call's
 *   input of the same path), `runtime().uploadDynamic(() => bytes)` (recomputed) or
 *   `runtime().uploadStatic(bytes)` (constant). Any other upload rejects the capture.
 * - Host side effects (a step counter) are registered with `runtime().onReplay(hook)`.
 * - No readback inside the step; every buffer it reads outlives it (parameters, state).
 * - Per-call scalars reach ops through `current()`, the second argument of the step function,
 *   which returns the inputs of the call being run or replayed (e.g. a dropout step seed as
 *   `() => current().stepSeed`).
 *
 * Buffers acquired while recording are pinned (the pool never hands them to anyone else)
 * until the capture is disposed or evicted. Outputs of a replay are views of pinned buffers:
 * valid until the next call of the same capture; disposing them is harmless.
 *
 * @module
 */
import type { PooledBuffer } from "./buffer_pool.ts";
import { runtime } from "./runtime.ts";
import { keep, Tensor, tidy } from "./tensor.ts";
import type { ReplayOp, ReplayProgram, Trace, TraceUpload } from "./trace.ts";

/** Options of {@link capture}. */
export interface CaptureOptions<I> {
  /** Names the step in messages. */
  name: string;
  /** false: always run eagerly (debugging, `--no-replay`). Default true. */
  replay?: boolean;
  /** The shape key of a call (default: array lengths, tensor shapes and other values). */
  key?: (inputs: I) => string;
  /** Top-level input fields left out of the default key: per-call scalars (a step seed). */
  dynamic?: readonly string[];
  /** Captures kept (least recently used evicted). Default 4. */
  maxCaptures?: number;
  /** Throw instead of falling back to eager when a step cannot be replayed (tests). */
  strict?: boolean;
}

/** Counts of a captured function's calls. */
export interface CaptureStats {
  calls: number;
  eager: number;
  recorded: number;
  replays: number;
  /** Keys that fell back to eager, with why. */
  fallbacks: string[];
}

/** A captured step function. */
export interface Captured<I, O> {
  (inputs: I): O;
  stats(): CaptureStats;
  /** Free every capture's pinned buffers (outputs of replays become invalid). */
  dispose(): void;
}

type Leaf = ArrayLike<number>;
interface Leaves {
  arrays: Leaf[];
  tensors: Tensor[];
}

interface Recording {
  trace: Trace;
  arena: Set<PooledBuffer>;
  out: unknown;
  outTensors: Tensor[];
  slots: Tensor[];
  /** Upload entry -> input leaf index (-1: not an input). */
  leafOf: number[];
}

interface Committed {
  rec: Recording;
  program: ReplayProgram & { stagingBytes: Uint8Array };
  fills: {
    offset: number;
    bytes: number;
    compute: (() => ArrayBufferView) | null;
    leaf: number;
    ctor: unknown;
  }[];
  bases: Tensor[];
}

interface Entry {
  calls: number;
  first?: Recording;
  committed?: Committed;
  eagerReason?: string;
}

/**
 * Wrap a step function for capture and replay. `fn(inputs, current)` must be synchronous;
 * `current()` returns the inputs of the call being run or replayed.
 */
export function capture<I, O>(
  fn: (inputs: I, current: () => I) => O,
  opts: CaptureOptions<I>,
): Captured<I, O> {
  const entries = new Map<string, Entry>();
  const stats: CaptureStats = { calls: 0, eager: 0, recorded: 0, replays: 0, fallbacks: [] };
  const max = opts.maxCaptures ?? 4;
  let cur: I;
  const current = () => cur;
  const dynamic = new Set(opts.dynamic ?? []);

  const fallback = (e: Entry, key: string, reason: string) => {
    const msg = `capture '${opts.name}' [${key}]: ${reason}`;
    if (opts.strict) throw new Error(msg);
    e.eagerReason = reason;
    stats.fallbacks.push(msg);
  };

  const call = (inputs: I): O => {
    stats.calls++;
    cur = inputs;
    if (opts.replay === false) {
      stats.eager++;
      return fn(inputs, current);
    }
    const key = opts.key ? opts.key(inputs) : defaultKey(inputs, dynamic);
    let e = entries.get(key);
    if (e) entries.delete(key); // re-insert: most recently used last
    else e = { calls: 0 };
    entries.set(key, e);
    if (entries.size > max) {
      const [oldKey, old] = entries.entries().next().value!;
      entries.delete(oldKey);
      release(old);
    }
    e.calls++;
    if (e.eagerReason !== undefined || e.calls === 1) {
      stats.eager++;
      return fn(inputs, current);
    }
    if (e.committed) {
      stats.replays++;
      return replay(e.committed, inputs);
    }
    stats.recorded++;
    const leaves = collectLeaves(inputs);
    const rec = record(fn, inputs, current, leaves);
    const bad = validate(rec);
    if (bad) {
      runtime().pool.unpin(rec.arena);
      if (e.first) runtime().pool.unpin(e.first.arena);
      e.first = undefined;
      fallback(e, key, bad);
      return rec.out as O;
    }
    if (!e.first) {
      e.first = rec;
      return rec.out as O;
    }
    const diff = compare(e.first, rec);
    runtime().pool.unpin(e.first.arena);
    e.first.slots.forEach((s) => s.dispose());
    e.first = undefined;
    if (diff) {
      runtime().pool.unpin(rec.arena);
      fallback(e, key, `two recordings differ (${diff}): the step is not replayable`);
      return rec.out as O;
    }
    e.committed = compile(rec);
    return rec.out as O;
  };

  const release = (e: Entry) => {
    const pool = runtime().pool;
    if (e.first) {
      pool.unpin(e.first.arena);
      e.first.slots.forEach((s) => s.dispose());
    }
    if (e.committed) {
      e.committed.bases.forEach((b) => b.dispose());
      e.committed.rec.slots.forEach((s) => s.dispose());
      e.committed.program.staging?.destroy();
      pool.unpin(e.committed.rec.arena);
    }
  };

  const wrapped = call as Captured<I, O>;
  wrapped.stats = () => ({ ...stats, fallbacks: [...stats.fallbacks] });
  wrapped.dispose = () => {
    for (const e of entries.values()) release(e);
    entries.clear();
  };
  return wrapped;
}

function isLeafArray(v: unknown): v is Leaf {
  return (ArrayBuffer.isView(v) && !(v instanceof DataView)) ||
    (Array.isArray(v) && (v.length === 0 || typeof v[0] === "number"));
}

/** Array lengths and types, tensor shapes, and other values, in field order. */
function defaultKey(inputs: unknown, dynamic: Set<string>, depth = 0): string {
  if (inputs instanceof Tensor) return `T${inputs.dtype}[${inputs.shape}]`;
  if (isLeafArray(inputs)) return `A${(inputs as object).constructor.name}${inputs.length}`;
  if (inputs && typeof inputs === "object" && depth < 3) {
    let k = "{";
    for (const [name, v] of Object.entries(inputs)) {
      if (depth === 0 && dynamic.has(name)) continue;
      k += `${name}:${defaultKey(v, dynamic, depth + 1)},`;
    }
    return k + "}";
  }
  return String(inputs);
}

/** The input arrays and tensors, in a fixed walk order (the same for the same key). */
function collectLeaves(inputs: unknown): Leaves {
  const out: Leaves = { arrays: [], tensors: [] };
  const walk = (v: unknown, depth: number) => {
    if (v instanceof Tensor) out.tensors.push(v);
    else if (isLeafArray(v)) out.arrays.push(v);
    else if (v && typeof v === "object" && depth < 3) {
      for (const x of Object.values(v)) walk(x, depth + 1);
    }
  };
  walk(inputs, 0);
  return out;
}

/** Input tensors are copied into capture-owned slots (top level or the input itself). */
function withSlots<I>(inputs: I, slots: Map<Tensor, Tensor>): I {
  if (inputs instanceof Tensor) return (slots.get(inputs) ?? inputs) as I;
  if (slots.size === 0 || !inputs || typeof inputs !== "object") return inputs;
  const copy = (Array.isArray(inputs) ? [...inputs] : { ...inputs }) as Record<string, unknown>;
  for (const [k, v] of Object.entries(copy)) {
    if (v instanceof Tensor && slots.has(v)) copy[k] = slots.get(v);
  }
  return copy as I;
}

function record<I, O>(
  fn: (inputs: I, current: () => I) => O,
  inputs: I,
  current: () => I,
  leaves: Leaves,
): Recording {
  const rt = runtime();
  rt.pool.beginArena();
  let trace: Trace | null = null;
  const slots = new Map<Tensor, Tensor>();
  let out: O;
  try {
    for (const t of leaves.tensors) {
      const slot = keep(Tensor.empty(t.shape, t.dtype));
      slot.intRange = t.intRange;
      copyInto(t, slot);
      slots.set(t, slot);
    }
    rt.beginTrace();
    try {
      out = tidy(() => fn(withSlots(inputs, slots), current));
    } finally {
      trace = rt.endTrace();
    }
  } catch (e) {
    rt.pool.abandonArena();
    throw e;
  }
  const arena = rt.pool.endArena();
  const index = new Map<unknown, number>();
  leaves.arrays.forEach((a, i) => index.set(a, i));
  const leafOf = trace.entries.map((e) =>
    e.kind === "upload" && e.source !== undefined ? index.get(e.source) ?? -1 : -1
  );
  const outTensors: Tensor[] = [];
  collectOut(out, outTensors, 0);
  return { trace, arena, out, outTensors, slots: [...slots.values()], leafOf };
}

function copyInto(src: Tensor, dst: Tensor): void {
  const bytes = Math.ceil((src.size * (src.dtype === "f16" ? 2 : 4)) / 4) * 4;
  if (bytes > 0) runtime().copy(src.buffer, dst.buffer, bytes);
}

function collectOut(v: unknown, out: Tensor[], depth: number): void {
  if (v instanceof Tensor) out.push(v);
  else if (v && typeof v === "object" && depth < 3 && !ArrayBuffer.isView(v)) {
    for (const x of Object.values(v)) collectOut(x, out, depth + 1);
  }
}

/** Why a recording cannot be replayed, or null. */
function validate(rec: Recording): string | null {
  const { entries } = rec.trace;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.kind !== "upload") continue;
    if (e.compute || e.isStatic || rec.leafOf[i] >= 0) continue;
    // Name the op that reads it: the next dispatch binding the buffer.
    const user = entries.slice(i).find((d) =>
      d.kind === "dispatch" && d.buffers.includes(e.target)
    );
    const op = user?.kind === "dispatch" ? user.label : "?";
    return `op '${op}' uploads host data that is neither an input array nor declared ` +
      "dynamic (runtime().uploadDynamic) or static (runtime().uploadStatic)";
  }
  for (const e of entries) {
    const bufs = e.kind === "dispatch"
      ? e.buffers
      : e.kind === "copy"
      ? [e.src, e.dst]
      : e.kind === "upload"
      ? [e.target]
      : [];
    for (const b of bufs) {
      if (!rec.arena.has(b) && b.holds === 0) {
        return `the step uses buffer ${b.id}, which it frees (a buffer it reads must outlive it)`;
      }
    }
  }
  return null;
}

/** Where two recordings differ, or null: same commands, same buffers up to their arenas. */
function compare(a: Recording, b: Recording): string | null {
  const ab = new Map<PooledBuffer, PooledBuffer>();
  const ba = new Map<PooledBuffer, PooledBuffer>();
  const same = (x: PooledBuffer, y: PooledBuffer): boolean => {
    const inA = a.arena.has(x), inB = b.arena.has(y);
    if (inA !== inB) return false;
    if (!inA) return x === y;
    const m = ab.get(x), n = ba.get(y);
    if (m === undefined && n === undefined) {
      ab.set(x, y);
      ba.set(y, x);
      return true;
    }
    return m === y && n === x;
  };
  const ea = a.trace.entries, eb = b.trace.entries;
  if (ea.length !== eb.length) return `${ea.length} vs ${eb.length} commands`;
  if (a.trace.hooks.length !== b.trace.hooks.length) return "host hooks";
  if (a.outTensors.length !== b.outTensors.length) return "outputs";
  for (let i = 0; i < ea.length; i++) {
    const x = ea[i], y = eb[i];
    if (x.kind !== y.kind) return `command ${i}: ${x.kind} vs ${y.kind}`;
    if (x.kind === "dispatch" && y.kind === "dispatch") {
      if (
        x.pipeline !== y.pipeline || x.x !== y.x || x.y !== y.y || x.z !== y.z ||
        x.buffers.length !== y.buffers.length
      ) return `dispatch ${i} ('${y.label}')`;
      const k = x.buffers.findIndex((p, k) => !same(p, y.buffers[k]));
      if (k >= 0) return `dispatch ${i} ('${y.label}') binding ${k}`;
    } else if (x.kind === "copy" && y.kind === "copy") {
      if (
        !same(x.src, y.src) || !same(x.dst, y.dst) || x.bytes !== y.bytes ||
        x.srcOffset !== y.srcOffset || x.dstOffset !== y.dstOffset
      ) return `copy ${i}`;
    } else if (x.kind === "upload" && y.kind === "upload") {
      if (
        !same(x.target, y.target) || x.bytes.length !== y.bytes.length ||
        x.isStatic !== y.isStatic || !x.compute !== !y.compute || a.leafOf[i] !== b.leafOf[i]
      ) return `upload ${i}`;
      if (x.isStatic && !x.bytes.every((v, k) => v === y.bytes[k])) {
        return `upload ${i} declared static changed`;
      }
    }
  }
  for (let k = 0; k < a.outTensors.length; k++) {
    const x = a.outTensors[k], y = b.outTensors[k];
    if (x.shape.join() !== y.shape.join() || x.dtype !== y.dtype) return `output ${k}`;
  }
  return null;
}

function compile(rec: Recording): Committed {
  const rt = runtime();
  const { entries } = rec.trace;
  let total = 0;
  const offsets = entries.map((e) => {
    if (e.kind !== "upload") return -1;
    const o = total;
    total += e.bytes.length;
    return o;
  });
  const stagingBytes = new Uint8Array(total);
  const staging = total > 0
    ? rt.device.createBuffer({
      size: total,
      usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: "capture-staging",
    })
    : null;
  const touchedSet = new Set<PooledBuffer>();
  const prologue: ReplayProgram["prologue"][number][] = [];
  const ops: ReplayOp[] = [];
  const fills: Committed["fills"] = [];
  entries.forEach((e, i) => {
    if (e.kind === "dispatch") {
      ops.push({
        kind: 0,
        pipeline: e.pipeline,
        group: e.group,
        x: e.x,
        y: e.y,
        z: e.z,
        label: e.label,
      });
      for (const b of e.buffers) touchedSet.add(b);
    } else if (e.kind === "copy") {
      ops.push({
        kind: 1,
        src: e.src.buffer,
        srcOffset: e.srcOffset,
        dst: e.dst.buffer,
        dstOffset: e.dstOffset,
        bytes: e.bytes,
      });
      touchedSet.add(e.src).add(e.dst);
    } else if (e.kind === "upload") {
      const u = e as TraceUpload;
      stagingBytes.set(u.bytes, offsets[i]);
      if (!u.isStatic) {
        fills.push({
          offset: offsets[i],
          bytes: u.bytes.length,
          compute: u.compute,
          leaf: rec.leafOf[i],
          ctor: u.ctor,
        });
      }
      // Nothing earlier touched the target: its bytes can land before the first command.
      const c = { dst: u.target.buffer, srcOffset: offsets[i], bytes: u.bytes.length };
      if (!touchedSet.has(u.target)) prologue.push(c);
      else {ops.push({
          kind: 1,
          src: staging!,
          srcOffset: c.srcOffset,
          dst: c.dst,
          dstOffset: 0,
          bytes: c.bytes,
        });}
      touchedSet.add(u.target);
    } else ops.push({ kind: 2 });
  });
  const bases = rec.outTensors.map((t) => {
    const b = keep(Tensor.fromBuffer(t.buffer, t.shape, t.dtype));
    b.intRange = t.intRange;
    return b;
  });
  return {
    rec,
    program: { staging, stagingBytes, prologue, ops, touched: [...touchedSet] },
    fills,
    bases,
  };
}

type TypedCtor = { new (n: number): ArrayBufferView & { set(a: ArrayLike<number>): void } };

function replay<I, O>(c: Committed, inputs: I): O {
  const rt = runtime();
  const leaves = collectLeaves(inputs);
  c.rec.slots.forEach((slot, k) => copyInto(leaves.tensors[k], slot));
  for (const h of c.rec.trace.hooks) h();
  const staging = c.program.stagingBytes;
  for (const f of c.fills) {
    let view: ArrayBufferView;
    if (f.compute) view = f.compute();
    else {
      const src = leaves.arrays[f.leaf];
      const ctor = f.ctor as TypedCtor | null;
      if (ctor && src instanceof (ctor as unknown as typeof Float32Array)) {
        view = src as ArrayBufferView;
      } else {
        const t = new (ctor ?? (Float32Array as unknown as TypedCtor))(src.length);
        t.set(src as ArrayLike<number>);
        view = t;
      }
    }
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    if (bytes.length > f.bytes || bytes.length < f.bytes - 3) {
      throw new Error(
        `capture: a per-call upload changed size (${f.bytes} -> ${bytes.length} bytes)`,
      );
    }
    staging.set(bytes, f.offset);
  }
  rt.replay(c.program);
  return rebuild(c.rec.out, c.rec.outTensors, c.bases, 0) as O;
}

function rebuild(v: unknown, orig: Tensor[], bases: Tensor[], depth: number): unknown {
  if (v instanceof Tensor) {
    const b = bases[orig.indexOf(v)];
    return b.view(b.shape);
  }
  if (v && typeof v === "object" && depth < 3 && !ArrayBuffer.isView(v)) {
    if (Array.isArray(v)) return v.map((x) => rebuild(x, orig, bases, depth + 1));
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = rebuild(x, orig, bases, depth + 1);
    return o;
  }
  return v;
}
