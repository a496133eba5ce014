/**
 * A restricted unpickler for the `data.pkl` that `torch.save(state_dict)` writes.
 *
 * Python's pickle is a small stack machine whose GLOBAL/REDUCE opcodes import and call
 * anything a file names, which is how malicious checkpoints run code. This one never imports
 * or calls anything: it only knows plain data opcodes and a fixed whitelist of names, which it
 * interprets itself:
 *
 * - `collections.OrderedDict` (called with no arguments) -> {@link PyDict}
 * - `torch._utils._rebuild_tensor_v2` and `torch._utils._rebuild_parameter` -> {@link TorchTensor}
 * - `torch.FloatStorage`, `HalfStorage`, `BFloat16Storage`, `LongStorage`, `IntStorage`, only
 *   inside persistent ids `('storage', cls, key, location, numel)` -> {@link TorchStorage}
 *
 * Any other global, any call of something else, BUILD on anything but a dict (torch sets a
 * state dict's `_metadata` that way) and every object-creating opcode (INST, OBJ, NEWOBJ, EXT*)
 * is refused with an error naming the global or opcode.
 *
 * Opcodes: the binary ones of protocol 2 (torch's default), plus FRAME, MEMOIZE,
 * SHORT_BINUNICODE and STACK_GLOBAL so files saved with `pickle_protocol=4` read too.
 *
 * @module
 */

import { STORAGE_CLASS_DTYPES, type TorchDtype } from "./dtype.ts";
import { TorchCheckpointError } from "./errors.ts";

/** A Python tuple (kept apart from lists: torch puts shapes and ids in tuples). */
export class PyTuple {
  /** @param items the elements. */
  constructor(readonly items: readonly PyValue[]) {}
}

/** A Python `dict` or `collections.OrderedDict`, in insertion order. */
export class PyDict {
  /** Key -> value, in insertion order. */
  readonly items: Map<PyKey, PyValue> = new Map();
  /** Instance attributes set by BUILD (torch stores a state dict's `_metadata` here). */
  readonly attributes: Map<string, PyValue> = new Map();
  /** @param ordered true for an OrderedDict. */
  constructor(readonly ordered: boolean) {}
}

/** A whitelisted global the file named (e.g. `torch.FloatStorage`); never imported. */
export class PyGlobal {
  /**
   * @param module Python module, e.g. `torch._utils`.
   * @param name attribute name, e.g. `_rebuild_tensor_v2`.
   */
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** One storage blob of the archive (`<prefix>/data/<key>`), as named by a persistent id. */
export class TorchStorage {
  /**
   * @param key entry name under `data/`.
   * @param dtype element type (from the storage class).
   * @param location device it was saved from, e.g. `cpu` or `cuda:0` (informational).
   * @param numel number of elements in the storage.
   */
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view into a storage. */
export class TorchTensor {
  /**
   * @param storage the storage the view reads.
   * @param storageOffset first element, counted in elements of the storage.
   * @param shape sizes.
   * @param stride element strides, one per dimension.
   * @param requiresGrad autograd flag (informational).
   * @param isParameter true when it came through `_rebuild_parameter`.
   */
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
    readonly isParameter = false,
  ) {}
}

/** Values usable as dict keys. */
export type PyKey = string | number | bigint | boolean | null;

/** Everything the restricted unpickler can produce. Lists are plain arrays. */
export type PyValue =
  | PyKey
  | PyValue[]
  | PyTuple
  | PyDict
  | PyGlobal
  | TorchStorage
  | TorchTensor;

const ORDERED_DICT = "collections.OrderedDict";
const REBUILD_TENSOR_V2 = "torch._utils._rebuild_tensor_v2";
const REBUILD_PARAMETER = "torch._utils._rebuild_parameter";
const ALLOWED_CALLABLES = new Set([ORDERED_DICT, REBUILD_TENSOR_V2, REBUILD_PARAMETER]);

/** Opcode names, for error messages (all protocols, so refused ones are named too). */
const OPCODE_NAMES: Record<number, string> = {
  0x28: "MARK",
  0x2e: "STOP",
  0x30: "POP",
  0x31: "POP_MARK",
  0x32: "DUP",
  0x46: "FLOAT",
  0x49: "INT",
  0x4a: "BININT",
  0x4b: "BININT1",
  0x4c: "LONG",
  0x4d: "BININT2",
  0x4e: "NONE",
  0x50: "PERSID",
  0x51: "BINPERSID",
  0x52: "REDUCE",
  0x53: "STRING",
  0x54: "BINSTRING",
  0x55: "SHORT_BINSTRING",
  0x56: "UNICODE",
  0x58: "BINUNICODE",
  0x61: "APPEND",
  0x62: "BUILD",
  0x63: "GLOBAL",
  0x64: "DICT",
  0x7d: "EMPTY_DICT",
  0x65: "APPENDS",
  0x67: "GET",
  0x68: "BINGET",
  0x69: "INST",
  0x6a: "LONG_BINGET",
  0x6c: "LIST",
  0x5d: "EMPTY_LIST",
  0x6f: "OBJ",
  0x70: "PUT",
  0x71: "BINPUT",
  0x72: "LONG_BINPUT",
  0x73: "SETITEM",
  0x74: "TUPLE",
  0x29: "EMPTY_TUPLE",
  0x75: "SETITEMS",
  0x47: "BINFLOAT",
  0x80: "PROTO",
  0x81: "NEWOBJ",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x85: "TUPLE1",
  0x86: "TUPLE2",
  0x87: "TUPLE3",
  0x88: "NEWTRUE",
  0x89: "NEWFALSE",
  0x8a: "LONG1",
  0x8b: "LONG4",
  0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES",
  0x8c: "SHORT_BINUNICODE",
  0x8d: "BINUNICODE8",
  0x8e: "BINBYTES8",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x92: "NEWOBJ_EX",
  0x93: "STACK_GLOBAL",
  0x94: "MEMOIZE",
  0x95: "FRAME",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

/** Longest LONG1/LONG4 integer accepted (torch only writes small ones). */
const MAX_LONG_BYTES = 64;

/** Python-style type name of a value, for error messages (`int`, `list`, `tensor`, ...). */
export function pyTypeName(v: PyValue): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return "list";
  if (v instanceof PyTuple) return "tuple";
  if (v instanceof PyDict) return v.ordered ? "OrderedDict" : "dict";
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof TorchStorage) return "storage";
  if (v instanceof TorchTensor) return "tensor";
  switch (typeof v) {
    case "string":
      return "str";
    case "boolean":
      return "bool";
    case "bigint":
      return "int";
    default:
      return Number.isInteger(v) ? "int" : "float";
  }
}

/**
 * Decode a torch `data.pkl` without executing anything it names.
 * @param bytes the pickle.
 * @param source file name for error messages.
 * @returns the top-level object (for a state dict, a {@link PyDict} of {@link TorchTensor}).
 * @throws TorchCheckpointError naming the refused global or opcode, or the malformation.
 */
export function unpickle(bytes: Uint8Array, source: string): PyValue {
  const fail = (problem: string): never => {
    throw new TorchCheckpointError(source, problem);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const storages = new Map<string, TorchStorage>();
  const memo = new Map<number, PyValue>();
  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  let pos = 0;
  let at = 0; // offset of the current opcode, for messages

  const need = (n: number) => {
    if (pos + n > bytes.length) fail(`truncated pickle at byte ${at}`);
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), pos += 2, view.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, view.getUint32(pos - 4, true));
  const i32 = () => (need(4), pos += 4, view.getInt32(pos - 4, true));
  const text = (n: number): string => {
    need(n);
    pos += n;
    try {
      return utf8.decode(bytes.subarray(pos - n, pos));
    } catch {
      return fail(`invalid UTF-8 string at byte ${at}`);
    }
  };
  /** GLOBAL's argument: "module\nname\n". */
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`truncated pickle at byte ${at}`);
    const s = text(end - pos);
    pos++;
    return s;
  };
  const pop = (): PyValue => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${at}`);
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${at}`);
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail(`pickle MARK missing at byte ${at}`);
    stack = prev!;
    return items;
  };
  const get = (i: number): PyValue => {
    if (!memo.has(i)) fail(`pickle memo key ${i} is undefined at byte ${at}`);
    return memo.get(i)!;
  };
  const key = (k: PyValue): PyKey => {
    if (k === null || ["string", "number", "bigint", "boolean"].includes(typeof k)) {
      return k as PyKey;
    }
    return fail(`unsupported dict key of type ${pyTypeName(k)}`);
  };
  const setItems = (target: PyValue, kv: PyValue[]) => {
    if (!(target instanceof PyDict)) return fail(`SETITEM(S) on a ${pyTypeName(target)}`);
    if (kv.length % 2) fail(`SETITEMS with an odd number of items at byte ${at}`);
    for (let i = 0; i < kv.length; i += 2) target.items.set(key(kv[i]), kv[i + 1]);
  };
  const appendTo = (target: PyValue, items: PyValue[]) => {
    if (!Array.isArray(target)) return fail(`APPEND(S) on a ${pyTypeName(target)}`);
    target.push(...items);
  };
  const global = (module: string, name: string): PyGlobal => {
    const g = new PyGlobal(module, name);
    const q = g.qualifiedName;
    if (ALLOWED_CALLABLES.has(q)) return g;
    if (module === "torch" && name in STORAGE_CLASS_DTYPES) return g;
    if (module === "torch" && name.endsWith("Storage")) {
      return fail(
        `unsupported tensor storage ${q} (supported: ` +
          `${Object.keys(STORAGE_CLASS_DTYPES).map((s) => `torch.${s}`).join(", ")})`,
      );
    }
    return fail(
      `pickle refers to global ${q}, which is not allowed: only state dicts of tensors are ` +
        `read and nothing a file names is imported or run (for a pickled model, save ` +
        `model.state_dict() instead)`,
    );
  };
  const long = (n: number): number | bigint => {
    if (n > MAX_LONG_BYTES) fail(`integer of ${n} bytes is too large`);
    need(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[pos + i]);
    if (n > 0 && bytes[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n); // two's complement
    pos += n;
    const safe = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
    return safe ? Number(v) : v;
  };

  // Storage identity matters: views of one storage share one key (and one entry).
  const persistentLoad = (pid: PyValue): TorchStorage => {
    const items = pid instanceof PyTuple ? pid.items : undefined;
    if (!items || items.length !== 5 || items[0] !== "storage") {
      return fail(`unsupported persistent id (expected ('storage', type, key, location, numel))`);
    }
    const [, cls, k, location, numel] = items;
    if (
      !(cls instanceof PyGlobal) || cls.module !== "torch" || !(cls.name in STORAGE_CLASS_DTYPES)
    ) {
      return fail(`persistent id names ${pyTypeName(cls)}, not a torch storage class`);
    }
    if (typeof k !== "string" || typeof location !== "string") {
      return fail("persistent id key and location must be strings");
    }
    if (typeof numel !== "number" || !Number.isInteger(numel) || numel < 0) {
      return fail(`persistent id for storage ${k} has a bad element count`);
    }
    if (!/^[A-Za-z0-9_.-]+$/.test(k) || k.includes("..")) {
      return fail(`storage key ${JSON.stringify(k)} is not a plain name`);
    }
    const dtype = STORAGE_CLASS_DTYPES[cls.name];
    const known = storages.get(k);
    if (known) {
      if (known.dtype !== dtype || known.numel !== numel) {
        fail(`storage ${k} is described twice with different types or sizes`);
      }
      return known;
    }
    const s = new TorchStorage(k, dtype, location, numel);
    storages.set(k, s);
    return s;
  };

  const intTuple = (v: PyValue, what: string): number[] => {
    const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
    if (!items) return fail(`tensor ${what} is a ${pyTypeName(v)}, not a tuple`);
    return items.map((x) => {
      if (typeof x !== "number" || !Number.isInteger(x) || x < 0) {
        return fail(`tensor ${what} has a bad entry ${String(x)}`);
      }
      return x;
    });
  };

  const reduce = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal) || !ALLOWED_CALLABLES.has(fn.qualifiedName)) {
      return fail(`REDUCE of ${pyTypeName(fn)} is not allowed`);
    }
    if (!(args instanceof PyTuple)) return fail(`REDUCE arguments are a ${pyTypeName(args)}`);
    const a = args.items;
    switch (fn.qualifiedName) {
      case ORDERED_DICT:
        if (a.length !== 0) fail("OrderedDict called with arguments");
        return new PyDict(true);
      case REBUILD_TENSOR_V2: {
        if (a.length !== 6 && a.length !== 7) {
          return fail(`_rebuild_tensor_v2 called with ${a.length} arguments`);
        }
        const [storage, offset, size, stride, requiresGrad, hooks, metadata] = a;
        if (!(storage instanceof TorchStorage)) {
          return fail(`_rebuild_tensor_v2 storage is a ${pyTypeName(storage)}`);
        }
        if (typeof offset !== "number" || !Number.isInteger(offset) || offset < 0) {
          return fail("_rebuild_tensor_v2 storage offset is not a non-negative integer");
        }
        const shape = intTuple(size, "shape");
        const strides = intTuple(stride, "stride");
        if (shape.length !== strides.length) fail("tensor shape and stride lengths differ");
        if (typeof requiresGrad !== "boolean") fail("_rebuild_tensor_v2 requires_grad not a bool");
        if (!(hooks instanceof PyDict)) fail("_rebuild_tensor_v2 backward_hooks not a dict");
        if (metadata !== undefined) {
          // Tensor flags such as {'conj': True, 'neg': True} would change values: refuse them.
          if (!(metadata instanceof PyDict)) return fail("_rebuild_tensor_v2 metadata not a dict");
          for (const [mk, mv] of metadata.items) {
            if (mv !== false) fail(`unsupported tensor metadata ${String(mk)}=${pyTypeName(mv)}`);
          }
        }
        return new TorchTensor(storage, offset, shape, strides, requiresGrad as boolean);
      }
      case REBUILD_PARAMETER: {
        const [data, requiresGrad, hooks] = a;
        if (a.length !== 3 || !(data instanceof TorchTensor)) {
          return fail("_rebuild_parameter called with bad arguments");
        }
        if (typeof requiresGrad !== "boolean" || !(hooks instanceof PyDict)) {
          return fail("_rebuild_parameter called with bad arguments");
        }
        return new TorchTensor(
          data.storage,
          data.storageOffset,
          data.shape,
          data.stride,
          requiresGrad,
          true,
        );
      }
    }
    return fail(`REDUCE of ${fn.qualifiedName} is not allowed`);
  };

  let proto = 0;
  for (;;) {
    at = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        proto = u8();
        if (proto < 2 || proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      case 0x95: // FRAME: a length prefix for buffering; the opcodes follow inline
        need(8);
        pos += 8;
        break;
      case 0x2e: { // STOP
        if (stack.length !== 1 || metastack.length !== 0) {
          fail("malformed pickle: STOP with a stack that does not hold exactly one object");
        }
        return stack[0];
      }
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8()));
        break;
      case 0x8b: // LONG4
        stack.push(long(u32()));
        break;
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x74: { // TUPLE (popMark swaps `stack`: take the items before touching it)
        const items = popMark();
        stack.push(new PyTuple(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: { // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendTo(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendTo(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict(false));
        break;
      case 0x64: { // DICT
        const d = new PyDict(false);
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x68: // BINGET
        stack.push(get(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(get(u32()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail("STACK_GLOBAL with non-string names");
        }
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x62: { // BUILD: only attribute state on a dict (a state dict's `_metadata`)
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict) || !(state instanceof PyDict)) {
          return fail(`BUILD on a ${pyTypeName(obj)} with a ${pyTypeName(state)} is not allowed`);
        }
        for (const [k, v] of state.items) {
          if (typeof k !== "string") fail("BUILD with a non-string attribute name");
          obj.attributes.set(k as string, v);
        }
        break;
      }
      default: {
        const name = OPCODE_NAMES[op];
        fail(
          name
            ? `pickle opcode ${name} (0x${op.toString(16)}) at byte ${at} is not allowed`
            : `unknown pickle opcode 0x${op.toString(16)} at byte ${at}`,
        );
      }
    }
  }
}
