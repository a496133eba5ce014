/**
 * The module system: nested modules give stable dotted names in registration order;
 * stateDict/loadStateDict round-trip bit-exactly; a load with missing, unexpected or
 * misshapen entries throws one error naming all of them and changes nothing; train()/eval()
 * reach every descendant; Linear/LayerNorm/Embedding compute what they claim.
 */
import assert from "node:assert/strict";
import { copyTensor, Module, type ParameterValues } from "../kernels/nn/module.ts";
import { Embedding, InitRng, LayerNorm, Linear } from "../kernels/nn/layers.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { assertClose, randArray } from "./helpers/reference.ts";
import { indexSelectRef, layerNormRef, matmulRef } from "./helpers/cpu_nn.ts";

await initRuntime();

class Block extends Module {
  readonly gain: Tensor;
  readonly ln: LayerNorm;
  readonly fc: Linear;
  constructor(rng: InitRng) {
    super();
    this.gain = this.param("gain", tensor(rng.normal(4, 1), [4]));
    this.ln = this.child("ln", new LayerNorm(4));
    this.fc = this.child("fc", new Linear(4, 3, rng));
  }
}

class Stack extends Module {
  readonly items: Block[] = [];
  constructor(rng: InitRng, n: number) {
    super();
    for (let i = 0; i < n; i++) this.items.push(this.child(String(i), new Block(rng)));
  }
}

class Model extends Module {
  readonly emb: Embedding;
  readonly blocks: Stack;
  readonly head: Linear;
  constructor(seed: number) {
    super();
    const rng = new InitRng(seed);
    this.emb = this.child("emb", new Embedding(6, 4, rng, 1));
    this.blocks = this.child("blocks", new Stack(rng, 2));
    this.head = this.child("head", new Linear(3, 2, rng, { bias: false, std: 1 }));
  }

  /** Free every parameter. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }
}

const NAMES = [
  "emb.weight",
  "blocks.0.gain",
  "blocks.0.ln.weight",
  "blocks.0.ln.bias",
  "blocks.0.fc.weight",
  "blocks.0.fc.bias",
  "blocks.1.gain",
  "blocks.1.ln.weight",
  "blocks.1.ln.bias",
  "blocks.1.fc.weight",
  "blocks.1.fc.bias",
  "head.weight",
];

/** The bits of every value, so -0, NaN payloads and subnormals count. */
function bits(sd: Map<string, ParameterValues>): Map<string, [number[], number[]]> {
  return new Map(
    [...sd].map((
      [n, v],
    ) => [n, [[...v.shape], [
      ...new Uint32Array(v.data.buffer, v.data.byteOffset, v.data.length),
    ]]]),
  );
}

Deno.test("Module: nested modules give stable dotted names in registration order", () => {
  const a = new Model(1);
  const b = new Model(2);
  assert.deepEqual(a.namedParameters().map(([n]) => n), NAMES);
  assert.deepEqual(b.namedParameters().map(([n]) => n), NAMES);
  assert.deepEqual(a.parameters(), a.namedParameters().map(([, p]) => p));
  // Listing a sub-module must not rename anything (optimizers take names from the root).
  const before = a.parameters().map((p) => p.name);
  a.blocks.parameters();
  assert.deepEqual(a.parameters().map((p) => p.name), before);
  assert.ok(a.parameters().every((p) => p.requiresGrad));
  assert.deepEqual(a.blocks.namedParameters("x.").map(([n]) => n).slice(0, 2), [
    "x.0.gain",
    "x.0.ln.weight",
  ]);
  assert.equal(a.parameterCount(), 6 * 4 + 2 * (4 + 4 + 4 + 12 + 3) + 6);
  assert.deepEqual(a.head.weight.shape, [2, 3], "Linear weight is [out, in]");
  a.dispose();
  b.dispose();
});

Deno.test("Module: duplicate parameter or child names throw", () => {
  class Dup extends Module {
    constructor(childToo: boolean) {
      super();
      this.param("w", tensor([1]));
      if (childToo) this.child("w", new LayerNorm(2));
      else this.param("w", tensor([2]));
    }
  }
  assert.throws(() => new Dup(false), /duplicate parameter or child name 'w'/);
  assert.throws(() => new Dup(true), /duplicate parameter or child name 'w'/);
});

Deno.test("Module: stateDict / loadStateDict round-trip bit-exactly", async () => {
  const src = new Model(1);
  const dst = new Model(2);
  const sd = await src.stateDict();
  assert.deepEqual([...sd.keys()], NAMES);
  // Values that a lossy path would change: -0, a subnormal, NaN with a payload, huge.
  const special = new Float32Array(
    new Uint32Array([0x80000000, 0x00000001, 0x7fc01234, 0x7f7fffff]).buffer,
  );
  sd.get("blocks.1.gain")!.data.set(special);
  assert.notDeepEqual(bits(await dst.stateDict()), bits(sd));
  dst.loadStateDict(sd);
  assert.deepEqual(bits(await dst.stateDict()), bits(sd));
  src.dispose();
  dst.dispose();
});

Deno.test("Module: commands recorded before a load see the old values", async () => {
  const m = new Model(3);
  const donor = new Model(4);
  const other = await donor.stateDict();
  donor.dispose();
  const idx = tensor([1, 5], [2], "i32");
  const before = m.emb.forward(idx); // recorded, not yet submitted
  const oldTable = (await m.stateDict()).get("emb.weight")!.data;
  m.loadStateDict(other);
  const after = m.emb.forward(idx);
  const [b, a] = await readAll([before, after]);
  assert.deepEqual(b, Float32Array.from(indexSelectRef(oldTable, 4, [1, 5])));
  assert.deepEqual(a, Float32Array.from(indexSelectRef(other.get("emb.weight")!.data, 4, [1, 5])));
  for (const t of [idx, before, after]) t.dispose();
  m.dispose();
});

Deno.test("Module: a bad load throws one error naming every problem and changes nothing", async () => {
  const m = new Model(5);
  const original = bits(await m.stateDict());
  const good = await new Model(6).stateDict();
  const cases: [string, (sd: Map<string, ParameterValues>) => void, RegExp][] = [
    ["missing", (sd) => sd.delete("blocks.0.fc.bias"), /missing: blocks\.0\.fc\.bias/],
    [
      "unexpected",
      (sd) => sd.set("blocks.2.gain", { shape: [4], data: new Float32Array(4) }),
      /unexpected: blocks\.2\.gain/,
    ],
    [
      "shape",
      (sd) => sd.set("head.weight", { shape: [3, 2], data: new Float32Array(6) }),
      /shape mismatch: head\.weight \(model \[2,3\], given \[3,2\]\)/,
    ],
    [
      "data length",
      (sd) => sd.set("head.weight", { shape: [2, 3], data: new Float32Array(5) }),
      /shape mismatch: head\.weight/,
    ],
    [
      "all three",
      (sd) => {
        sd.delete("emb.weight");
        sd.set("extra", { shape: [1], data: new Float32Array(1) });
        sd.set("blocks.1.ln.bias", { shape: [5], data: new Float32Array(5) });
      },
      /^Error: loadStateDict: missing: emb\.weight; unexpected: extra; shape mismatch: blocks\.1\.ln\.bias \(model \[4\], given \[5\]\)$/,
    ],
  ];
  for (const [what, edit, re] of cases) {
    const sd = new Map(good);
    edit(sd);
    assert.throws(() => m.loadStateDict(sd), (e: Error) => {
      assert.match(String(e), re, what);
      return true;
    });
    assert.deepEqual(bits(await m.stateDict()), original, `${what}: parameters changed`);
  }
  m.dispose();
});

Deno.test("Module: train() / eval() reach every descendant", () => {
  const m = new Model(7);
  const items = m.blocks.items;
  const every = () => [m, m.emb, m.blocks, m.head, ...items, ...items.flatMap((b) => [b.ln, b.fc])];
  assert.ok(every().every((x) => x.training), "modules start in training mode");
  assert.equal(m.eval(), m);
  assert.ok(every().every((x) => !x.training), "eval() reaches every descendant");
  m.train();
  assert.ok(every().every((x) => x.training), "train() reaches every descendant");
  m.blocks.train(false);
  assert.ok(m.training && m.emb.training && m.head.training, "parents and siblings unchanged");
  assert.ok(!m.blocks.training && !items[0].fc.training && !items[1].ln.training);
  m.dispose();
});

Deno.test("Linear, LayerNorm, Embedding: forward matches float64", async () => {
  const rng = new InitRng(9);
  const lin = new Linear(5, 3, rng, { std: 0.5 });
  const ln = new LayerNorm(5);
  const emb = new Embedding(4, 5, rng);
  const xs = randArray(2 * 3 * 5, 1);
  const x = tensor(Float32Array.from(xs), [2, 3, 5]);
  const idx = tensor([3, 0, 3], [3], "i32");
  const [y, z, e] = [lin.forward(x), ln.forward(x), emb.forward(idx)];
  assert.deepEqual(y.shape, [2, 3, 3]);
  const [w, b, table, yv, zv, ev] = await readAll([lin.weight, lin.bias!, emb.weight, y, z, e]);
  const ref = matmulRef({ data: xs, shape: [6, 5] }, { data: w, shape: [3, 5], trans: true }, b);
  assertClose(yv, ref.data, { what: "Linear" });
  assertClose(zv, layerNormRef(xs, [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], 5), { what: "LayerNorm" });
  assertClose(ev, indexSelectRef(table, 5, [3, 0, 3]), { what: "Embedding" });
  assert.throws(
    () => lin.forward(tensor(new Float32Array(4), [1, 4])),
    /Linear\(5, 3\): input \[1,4\]/,
  );
  for (const t of [x, idx, y, z, e, ...lin.parameters(), ...ln.parameters(), ...emb.parameters()]) {
    t.dispose();
  }
});

Deno.test("copyTensor: f16 copies exactly its bytes; an index tensor takes the source's range", async () => {
  // 128 halves fill a 256-byte pool buffer exactly: copying 4 bytes per element would overrun.
  const values = Array.from({ length: 128 }, (_, i) => (i - 64) * 0.5);
  const src16 = tensor(values, [2, 64], "f16");
  const dst16 = tensor(new Float32Array(128), [2, 64], "f16");
  copyTensor(src16, dst16);
  assert.deepEqual(Array.from(await dst16.read()), values);
  // Indices copied in keep their checked range: out-of-range ones still throw, not clamp.
  const table = tensor(new Float32Array(15), [5, 3]);
  const idx = tensor([0, 1], [2], "i32");
  const wide = tensor([9, 4], [2], "i32");
  copyTensor(wide, idx);
  assert.throws(() => op.indexSelect(table, idx), /indexSelect: index range \[4, 9\] outside/);
  for (const t of [src16, dst16, table, idx, wide]) t.dispose();
});
