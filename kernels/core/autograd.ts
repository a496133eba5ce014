/**
 * The tape: ops attach a `GradNode` (inputs + a backward closure) to their output when any
 * input requires a gradient; `backward(loss)` walks the nodes once in reverse topological
 * order and accumulates gradients into the leaves.
 *
 * @module
 */
import { type GradNode, keep, Tensor } from "./tensor.ts";

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
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, grad ?? ops.ones(root.shape));
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
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
    const inputGrads = t.node.backward(g);
    t.node.inputs.forEach((input, k) => {
      const ig = inputGrads[k];
      if (!ig || !input.requiresGrad) return;
      if (ig.shape.join() !== input.shape.join()) {
        throw new Error(
          `internal: '${
            t.node!.op
          }' gave a gradient of shape [${ig.shape}] for input [${input.shape}]`,
        );
      }
      const prev = grads.get(input);
      grads.set(input, prev ? ops.add(prev, ig) : ig);
    });
  }
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
