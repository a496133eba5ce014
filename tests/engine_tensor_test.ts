/**
 * Tensors and the tape: tidy/keep lifetimes (checked on the pool's byte count), views,
 * noGrad/detach, gradient accumulation, batched reads, clear errors raised before anything is
 * dispatched, and shader errors that name their op.
 */
import assert from "node:assert/strict";
import { backward, detach, isGradEnabled, noGrad } from "../kernels/core/autograd.ts";
import { initRuntime, runtime, ShaderError } from "../kernels/core/runtime.ts";
import { keep, readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

await initRuntime();

const bytesInUse = () => runtime().pool.stats().bytesInUse;

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

/** A leaf that collects gradients. */
function param(data: number[], shape = [data.length]): Tensor {
  const t = tensor(data, shape);
  t.requiresGrad = true;
  return t;
}

Deno.test("tidy disposes intermediates, keeps what it returns (also nested, in objects)", async () => {
  const start = bytesInUse();
  const made: Tensor[] = [];
  const y = tidy(() => {
    const a = tensor([1, 2, 3]);
    const b = op.exp(a);
    const c = op.add(b, a);
    made.push(a, b);
    return c;
  });
  assert.ok(made.every((t) => t.disposed), "intermediates disposed");
  assert.ok(!y.disposed);
  assert.equal(bytesInUse() - start, 256, "only the result's buffer stays in use");
  assertClose(await y.read(), [1, 2, 3].map((v) => Math.exp(v) + v));
  y.dispose();
  assert.equal(bytesInUse(), start);

  // Nested: the inner result moves to the outer scope, which frees it unless returned.
  let inner: Tensor | null = null;
  const out = tidy(() => {
    inner = tidy(() => op.mulScalar(tensor([1, 2]), 2));
    const pair = { kept: op.addScalar(inner, 1), list: [op.neg(inner)] };
    return pair;
  });
  assert.ok(inner!.disposed, "inner result freed by the outer scope");
  assert.ok(
    !out.kept.disposed && !out.list[0].disposed,
    "results inside objects and arrays survive",
  );
  assert.deepEqual([...await out.kept.read()], [3, 5]);
  assert.deepEqual([...await out.list[0].read()], [-2, -4]);
  out.kept.dispose();
  out.list[0].dispose();
  assert.equal(bytesInUse(), start);
});

Deno.test("tidy frees its tensors when fn throws; rejects async functions", () => {
  const start = bytesInUse();
  let t: Tensor | null = null;
  assert.throws(() =>
    tidy(() => {
      t = op.exp(tensor([1, 2, 3]));
      throw new Error("boom");
    }), /boom/);
  assert.ok(t!.disposed);
  assert.equal(bytesInUse(), start);
  assert.throws(() => tidy(() => Promise.resolve(1)), /tidy\(\) takes a synchronous function/);
});

Deno.test("keep() exempts a tensor from every enclosing scope", async () => {
  const start = bytesInUse();
  let kept: Tensor | null = null;
  let dropped: Tensor | null = null;
  tidy(() => {
    tidy(() => {
      kept = keep(op.addScalar(tensor([1, 2]), 1));
      dropped = op.addScalar(tensor([1, 2]), 1);
    });
  });
  assert.ok(!kept!.disposed && dropped!.disposed);
  assert.deepEqual([...await kept!.read()], [2, 3]);
  kept!.dispose();
  kept!.dispose(); // idempotent
  assert.equal(bytesInUse(), start);
});

Deno.test("views share storage; the buffer is released when the last one is disposed", async () => {
  const start = bytesInUse();
  const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const v = t.view([3, 2]);
  const r = op.reshape(t, [6]);
  assert.equal(v.buffer, t.buffer);
  assert.equal(r.buffer, t.buffer);
  assert.deepEqual(v.shape, [3, 2]);
  t.dispose();
  assert.ok(t.disposed && !v.disposed);
  assert.equal(bytesInUse() - start, 256, "storage alive while views are");
  assert.deepEqual([...await v.read()], [1, 2, 3, 4, 5, 6]);
  v.dispose();
  assert.deepEqual([...await r.read()], [1, 2, 3, 4, 5, 6]);
  r.dispose();
  assert.equal(bytesInUse(), start);
  // Views made inside tidy are released with it.
  const w = tidy(() => {
    const a = tensor([1, 2, 3, 4]);
    a.view([2, 2]);
    return op.reshape(a, [4, 1]);
  });
  assert.equal(bytesInUse() - start, 256);
  w.dispose();
  assert.equal(bytesInUse(), start);
  assert.throws(() => t.view([6]), /view of a disposed tensor/);
});

Deno.test("noGrad records nothing and restores the flag (also on throw)", () => {
  const x = param([1, 2, 3]);
  const y = noGrad(() => op.mul(x, x));
  assert.equal(y.requiresGrad, false);
  assert.equal(y.node, null);
  assert.ok(isGradEnabled());
  assert.throws(() =>
    noGrad(() => {
      throw new Error("inside");
    }), /inside/);
  assert.ok(isGradEnabled());
  const z = op.mul(x, x);
  assert.ok(z.requiresGrad && z.node?.op === "mul");
  assert.throws(() => backward(op.sumAll(y)), /does not depend on anything that requires a grad/);
  for (const t of [x, y, z]) t.dispose();
});

Deno.test("detach cuts the tape", async () => {
  const x = param([1, -2, 3]);
  tidy(() => {
    // z = stop_grad(x*x) * x: dz/dx = x^2 (not 3x^2).
    const d = detach(op.mul(x, x));
    assert.equal(d.requiresGrad, false);
    assert.equal(d.node, null);
    backward(op.sumAll(op.mul(d, x)));
  });
  assert.deepEqual([...await x.grad!.read()], [1, 4, 9]);
  x.grad!.dispose();
  x.dispose();
});

Deno.test("gradients accumulate: a tensor used twice, and across two backward calls", async () => {
  const start = bytesInUse();
  const x = param([1, -2, 3]);
  const y = param([0.5, 4, -1]);
  const step = () =>
    tidy(() => {
      // L = sum(x*x) + sum(x + y) + sum(y): dL/dx = 2x + 1, dL/dy = 2.
      backward(op.add(op.sumAll(op.mul(x, x)), op.sumAll(op.add(op.add(x, y), y))));
    });
  step();
  let [gx, gy] = await readAll([x.grad!, y.grad!]);
  assert.deepEqual([...gx], [3, -3, 7]);
  assert.deepEqual([...gy], [2, 2, 2]);
  step();
  [gx, gy] = await readAll([x.grad!, y.grad!]);
  assert.deepEqual([...gx], [6, -6, 14], "second backward adds to x.grad");
  assert.deepEqual([...gy], [4, 4, 4], "second backward adds to y.grad");
  for (const t of [x.grad!, y.grad!, x, y]) t.dispose();
  assert.equal(bytesInUse(), start, "backward inside tidy leaves nothing behind but the grads");
});

Deno.test("backward with an explicit gradient for a non-scalar root", async () => {
  const x = param([1, 2, 3, 4], [2, 2]);
  const g = tensor([1, 0, -1, 2], [2, 2]);
  tidy(() => backward(op.mulScalar(x, 3), g));
  assert.deepEqual([...await x.grad!.read()], [3, 0, -3, 6]);
  for (const t of [x.grad!, x, g]) t.dispose();
});

Deno.test("readAll batches several tensors of several dtypes into one submit", async () => {
  const a = tensor([1.5, 2.5]);
  const b = tensor([7, -8, 9], [3], "i32");
  const c = op.exp(tensor([0, 1]));
  const e = tensor([], [0]);
  const epoch = runtime().epoch;
  const [ra, rb, rc, re] = await readAll([a, b, c, e]);
  assert.equal(runtime().epoch, epoch + 1, "one submit for the whole batch");
  assert.ok(ra instanceof Float32Array && rb instanceof Int32Array);
  assert.deepEqual([...ra], [1.5, 2.5]);
  assert.deepEqual([...rb], [7, -8, 9]);
  assertClose(rc, [1, Math.E]);
  assert.equal(re.length, 0);
  assert.equal(await tensor([42], []).item(), 42);
  if (runtime().ctx.hasF16) {
    // An odd number of f16 values: uploads and reads pad to 4 bytes.
    const h = tensor([0.5, -3, 65504], [3], "f16");
    const [rh, ra2] = await readAll([h, a]);
    assert.ok(rh instanceof Float16Array);
    assert.deepEqual([...rh], [0.5, -3, 65504]);
    assert.deepEqual([...ra2], [1.5, 2.5]);
    h.dispose();
  }
  for (const t of [a, b, c, e]) t.dispose();
});

Deno.test("errors before dispatch: tensor(), disposed tensors, backward, item", async () => {
  assertThrowsBeforeDispatch(() => tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2,2\]/);
  assertThrowsBeforeDispatch(() => tensor([1.5], [1], "i32"), /value 1.5 is not a valid i32/);
  assertThrowsBeforeDispatch(() => tensor([-1], [1], "u32"), /value -1 is not a valid u32/);
  assertThrowsBeforeDispatch(() => Tensor.empty([2, -1]), /invalid shape \[2,-1\]/);
  const used0 = bytesInUse();
  assert.throws(() => tensor([1, 2], [-1, -2]), /invalid shape \[-1,-2\]/);
  assert.throws(() => tensor([1, 2], [2.5]), /invalid shape \[2.5\]/);
  const w = tensor([1, 2]);
  assert.throws(() => w.view([-1, -2]), /invalid shape \[-1,-2\]/);
  w.dispose();
  assert.equal(bytesInUse(), used0, "bad shapes leaked a buffer");
  const x = tensor([1, 2]);
  x.name = "weights";
  x.dispose();
  const y = tensor([3, 4]);
  assertThrowsBeforeDispatch(() => op.add(y, x), /use of a disposed tensor 'weights'/);
  assertThrowsBeforeDispatch(() => op.exp(x), /use of a disposed tensor/);
  assertThrowsBeforeDispatch(() => op.sum(x, 0), /use of a disposed tensor/);
  assertThrowsBeforeDispatch(() => op.permute(x, [0]), /use of a disposed tensor/);
  assertThrowsBeforeDispatch(() => op.concat([y, x], 0), /use of a disposed tensor/);
  await assert.rejects(() => x.read(), /use of a disposed tensor/);
  // Outside tidy too, a failed op allocates nothing.
  const used = bytesInUse();
  for (const f of [() => op.exp(x), () => op.sum(x, 0), () => op.slice(x, 0, 0, 1)]) {
    assert.throws(f, /use of a disposed tensor/);
  }
  assert.throws(() => op.concat([y, x], 0), /use of a disposed tensor/);
  assert.equal(bytesInUse(), used, "a failed op leaked its output");
  await assert.rejects(() => y.item(), /item\(\) needs a tensor of one element, got \[2\]/);
  const p = param([1, 2]);
  const twice = op.mulScalar(p, 2);
  assertThrowsBeforeDispatch(
    () => backward(twice),
    /backward\(\): root must be a scalar without an explicit grad, got \[2\]/,
  );
  assertThrowsBeforeDispatch(() => backward(y), /does not depend on anything/);
  const seed = tensor([1, 2, 3]);
  assertThrowsBeforeDispatch(
    () => backward(twice, seed),
    /backward\(\): grad of shape \[3\] for a root of shape \[2\]/,
  );
  seed.dispose();
  assert.equal(p.grad, null);
  for (const t of [y, p, twice]) t.dispose();
});

Deno.test("a grid over the per-dimension limit throws naming the op, before dispatch", () => {
  const before = runtime().dispatchCount;
  assert.throws(
    () =>
      runtime().dispatch(
        { code: "@compute @workgroup_size(1) fn main() {}", label: "huge-op", workgroups: [70000] },
        [],
      ),
    /op 'huge-op': grid 70000x1x1 exceeds 65535/,
  );
  assert.equal(runtime().dispatchCount, before);
});

Deno.test("a shader error rejects flush() with a ShaderError naming the op", async () => {
  const before = runtime().pipelineCount;
  runtime().dispatch(
    {
      code: "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }",
      label: "my-bad-op",
      workgroups: [1, 1, 1],
    },
    [],
  );
  const err = await runtime().flush().then(() => null, (e) => e);
  assert.ok(err instanceof ShaderError, `expected a ShaderError, got ${err}`);
  assert.match(err.message, /my-bad-op/);
  assert.equal(runtime().pipelineCount, before, "the failed pipeline is not cached");
  // The runtime keeps working afterwards.
  const t = op.addScalar(tensor([1, 2]), 1);
  assert.deepEqual([...await t.read()], [2, 3]);
  t.dispose();
});

Deno.test("ops on random data keep the pool flat across iterations (no leaks)", async () => {
  const x = param(Array.from(randArray(12, 3)), [3, 4]);
  const run = () =>
    tidy(() => {
      const h = op.tanh(op.add(op.mul(x, x), op.sum(x, 0, true)));
      const loss = op.meanAll(op.concat([op.slice(h, 0, 0, 2), op.pad(h, 0, 1, 0)], 0));
      backward(loss);
      return loss;
    });
  const first = run();
  first.dispose();
  x.grad!.dispose();
  x.grad = null;
  const start = bytesInUse();
  for (let i = 0; i < 3; i++) {
    run().dispose();
    x.grad!.dispose();
    x.grad = null;
  }
  await runtime().sync();
  assert.equal(bytesInUse(), start);
  x.dispose();
});
