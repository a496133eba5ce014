/**
 * Vector quantization (VQ-VAE): each row of z snaps to its nearest codebook entry by L2
 * distance, computed through the matmul as ||z||^2 - 2 z·e + ||e||^2 and then an argmin.
 *
 * Gradients (van den Oord et al. 2017): the quantized output passes its gradient straight
 * through to z (dz = dzq); the codebook learns only from the codebook loss
 * mean((sg[z] - e)^2), and z additionally from the commitment loss mean((z - sg[e])^2).
 */
import { detach, noGrad, record } from "../core/autograd.ts";
import { type Tensor, tidy } from "../core/tensor.ts";
import { mul, sub } from "./elementwise.ts";
import { indexSelect } from "./gather.ts";
import { mapKernel } from "./map.ts";
import { matmul } from "./matmul.ts";
import { argmax, meanAll, sum } from "./reduce.ts";

/** What `vectorQuantize` returns. */
export interface Quantized {
  /** Nearest codebook row per input row, i32 [N] (first on ties). */
  indices: Tensor;
  /** Codebook rows [N, D]; its gradient goes straight through to z. */
  zq: Tensor;
  /** mean((sg[z] - e)^2): gradient to the codebook only. */
  codebookLoss: Tensor;
  /** mean((z - sg[e])^2): gradient to z only. */
  commitmentLoss: Tensor;
}

/** Nearest codebook indices of the rows of z [N, D] (no gradient). */
export function nearestCode(z: Tensor, codebook: Tensor): Tensor {
  if (z.rank !== 2 || codebook.rank !== 2 || z.shape[1] !== codebook.shape[1]) {
    throw new Error(
      `vectorQuantize: z [${z.shape}] and codebook [${codebook.shape}] must be [N, D], [V, D]`,
    );
  }
  const V = codebook.shape[0];
  return noGrad(() =>
    tidy(() => {
      const ze = matmul(z, codebook, { transB: true }); // [N, V]
      const zz = sum(mul(z, z), 1, true); // [N, 1]
      const ee = sum(mul(codebook, codebook), 1).view([1, V]); // [1, V]
      // argmax of the negated squared distance = argmin of the distance.
      return argmax(mapKernel("vq.neg_dist", [ze, zz, ee], "2.0 * a - b - c"), 1);
    })
  );
}

/** Quantize z [N, D] against codebook [V, D]. */
export function vectorQuantize(z: Tensor, codebook: Tensor): Quantized {
  const indices = nearestCode(z, codebook);
  const e = indexSelect(codebook, indices); // gradient scatters into the codebook rows
  const zDet = detach(z);
  const eDet = detach(e);
  const d1 = sub(zDet, e);
  const codebookLoss = meanAll(mul(d1, d1));
  const d2 = sub(z, eDet);
  const commitmentLoss = meanAll(mul(d2, d2));
  // Straight-through: the values of e, the gradient of the identity on z.
  const zq = record(
    mapKernel("vq.straight_through", [eDet], "a"),
    "vq.straight_through",
    [z],
    (g) => [g],
  );
  return { indices, zq, codebookLoss, commitmentLoss };
}
