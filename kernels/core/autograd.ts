/**
 * The tape: ops attach a `GradNode` (inputs + a backward closure) to their output when any
 * input requires a gradient; `backward(loss)` walks the nodes once in reverse topological
 * order and accumulates gradients into the leaves.
 *
 * @module
 */
import { type GradNode, type JointGrad, keep, Tensor } from "./tensor.ts";

let gradEnabled = true;

/** Whether ops currently record onto the tape. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run `fn` without recording gradients (inference, target networks). */
export function noGrad<T>(fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = before;
  }
}

/** Attach a backward rule to `out` if gradients flow through any of `inputs`. */
export function record(
  out: Tensor,
  op: string,
  inputs: readonly Tensor[],
  backward: GradNode["backward"],
): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward };
  }
  return out;
}

/**
 * Attach one backward rule to several outputs of one op (e.g. a fused residual add + layer
 * norm that returns both the stream and its norm). The tape runs `backward` once, after every
 * output's gradient is complete, so the op itself sums the gradients its outputs receive
 * (no separate add). Outputs that received no gradient get null.
 */
export function recordJoint(
  outs: readonly Tensor[],
  op: string,
  inputs: readonly Tensor[],
  backward: JointGrad["backward"],
): void {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return;
  const joint: JointGrad = { outputs: outs, backward };
  for (const out of outs) {
    out.requiresGrad = true;
    out.node = {
      op,
      inputs,
      joint,
      backward: () => {
        throw new Error(`internal: '${op}' has several outputs; the tape runs its joint rule`);
      },
    };
  }
}

/** The same values cut from the tape (shares storage). */
export function detach(t: Tensor): Tensor {
  return t.view(t.shape);
}

/** Hooks the ops layer provides, so the tape needs no kernels of its own. */
export interface TapeOps {
  add(a: Tensor, b: Tensor): Tensor;
  ones(shape: readonly number[]): Tensor;
}

let tapeOps: TapeOps | null = null;

/** Called once by the ops layer. */
export function registerTapeOps(ops: TapeOps): void {
  tapeOps = ops;
}

/**
 * Backpropagate from `root` (a scalar unless `grad` is given). Leaves that require gradients
 * get `.grad` set (or added to), kept alive outside any `tidy` scope.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!tapeOps) throw new Error("ops not loaded: import the kernels module");
  const ops = tapeOps;
  if (!root.requiresGrad) {
    throw new Error("backward(): the tensor does not depend on anything that requires a gradient");
  }
  if (!grad && root.size !== 1) {
    throw new Error(
      `backward(): root must be a scalar without an explicit grad, got [${root.shape}]`,
    );
  }
  // A mismatched seed would be silently broadcast (or misindexed) by the first backward rule.
  if (grad && grad.shape.join() !== root.shape.join()) {
    throw new Error(
      `backward(): grad of shape [${grad.shape}] for a root of shape [${root.shape}]`,
    );
  }
  const order = topologicalOrder(root);
  // A joint rule runs at its last output in reverse order (the earliest in topological order):
  // every consumer of every output comes after that one, so all their gradients are in.
  const jointLeft = new Map<JointGrad, number>();
  for (const t of order) {
    const j = t.node?.joint;
    if (j) jointLeft.set(j, (jointLeft.get(j) ?? 0) + 1);
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, grad ?? ops.ones(root.shape));
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    const joint = t.node?.joint;
    if (joint) {
      const left = jointLeft.get(joint)! - 1;
      jointLeft.set(joint, left);
      if (left > 0) continue;
      const outGrads = joint.outputs.map((o) => grads.get(o) ?? null);
      if (outGrads.every((g) => g === null)) continue;
      accumulate(t.node!, joint.backward(outGrads), grads, ops);
      continue;
    }
    const g = grads.get(t);
    if (!g) continue;
    if (!t.node) {
      if (t.requiresGrad) {
        const old = t.grad;
        t.grad = keep(old ? ops.add(old, g) : g);
        if (old) old.dispose();
      }
      continue;
    }
    accumulate(t.node, t.node.backward(g), grads, ops);
  }
}

/** Add a node's input gradients into `grads` (shapes checked). */
function accumulate(
  node: GradNode,
  inputGrads: readonly (Tensor | null)[],
  grads: Map<Tensor, Tensor>,
  ops: TapeOps,
): void {
  node.inputs.forEach((input, k) => {
    const ig = inputGrads[k];
    if (!ig || !input.requiresGrad) return;
    if (ig.shape.join() !== input.shape.join()) {
      throw new Error(
        `internal: '${node.op}' gave a gradient of shape [${ig.shape}] for input [${input.shape}]`,
      );
    }
    const prev = grads.get(input);
    grads.set(input, prev ? ops.add(prev, ig) : ig);
  });
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: transformer tapes are deep enough to overflow recursion.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, k] = top;
    const inputs = t.node?.inputs ?? [];
    if (k < inputs.length) {
      top[1]++;
      const next = inputs[k];
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order;
}
