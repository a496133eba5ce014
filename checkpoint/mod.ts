/**
 * Checkpoints and run directories, shared by training (train/) and evaluation (eval/) so that
 * neither reaches into the other:
 *
 * - `run_dir.ts`: a run's directory layout (config, metrics, numbered checkpoint folders) and
 *   atomic file writes.
 * - `model_checkpoint.ts`: one module's weights (world-action model, tokenizer) as
 *   safetensors with the config in the metadata.
 * - `train_checkpoint.ts`: a complete training state (modules, optimizers, step) for resume.
 * - `stored_config.ts`: reads and validates the config stored in a checkpoint file.
 * - `loader.ts`: finds and loads the world-action and tokenizer checkpoints for evaluation.
 * @module
 */
export * from "./run_dir.ts";
export * from "./model_checkpoint.ts";
export * from "./train_checkpoint.ts";
export * from "./stored_config.ts";
export * from "./loader.ts";
