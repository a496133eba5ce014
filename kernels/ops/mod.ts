/**
 * Every op of the engine. Importing this module also hands the tape the two ops it needs
 * (gradient accumulation and the seed gradient).
 *
 * @module
 */
import { registerTapeOps } from "../autograd.ts";
import { add, ones } from "./elementwise.ts";

export * from "./elementwise.ts";
export * from "./reduce.ts";
export * from "./layout.ts";

registerTapeOps({ add, ones });
