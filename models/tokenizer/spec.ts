/**
 * The tokenizer's parameters as names and shapes, without allocating anything (the JOWA
 * importer checks the authors' tensors against it without a GPU). Same names and order as
 * `new Tokenizer(cfg).namedParameters()`; tests/jowa_import_test.ts checks the two agree.
 *
 * @module
 */
import { levelResolutions, type TokenizerConfig } from "./config.ts";

/** One parameter: dotted name and shape. */
export interface TokenizerParam {
  name: string;
  shape: number[];
}

/** Every parameter of a tokenizer of `cfg`, in registration order. */
export function tokenizerParamSpec(cfg: TokenizerConfig): TokenizerParam[] {
  const out: TokenizerParam[] = [];
  const C = cfg.ch;
  const conv = (name: string, cout: number, cin: number, k: number) => {
    out.push({ name: `${name}.weight`, shape: [cout, cin, k, k] });
    out.push({ name: `${name}.bias`, shape: [cout] });
  };
  const norm = (name: string) => {
    out.push({ name: `${name}.weight`, shape: [C] }, { name: `${name}.bias`, shape: [C] });
  };
  const res = (name: string) => {
    norm(`${name}.norm1`);
    conv(`${name}.conv1`, C, C, 3);
    norm(`${name}.norm2`);
    conv(`${name}.conv2`, C, C, 3);
  };
  const attn = (name: string) => {
    norm(`${name}.norm`);
    for (const p of ["q", "k", "v", "proj_out"]) conv(`${name}.${p}`, C, C, 1);
  };
  const level = (name: string, blocks: number, withAttn: boolean, resample?: [string, number]) => {
    for (let i = 0; i < blocks; i++) res(`${name}.block.${i}`);
    if (withAttn) { for (let i = 0; i < blocks; i++) attn(`${name}.attn.${i}`); }
    if (resample) conv(`${name}.${resample[0]}.conv`, C, C, resample[1]);
  };
  const mid = (name: string) => {
    res(`${name}.block_1`);
    attn(`${name}.attn_1`);
    res(`${name}.block_2`);
  };

  const resolutions = levelResolutions(cfg);
  conv("encoder.conv_in", C, cfg.inChannels, 3);
  resolutions.forEach((r, i) => {
    const down = cfg.down[i];
    level(
      `encoder.down.${i}`,
      cfg.numResBlocks,
      cfg.attnResolutions.includes(r),
      down ? ["downsample", down.kernel] : undefined,
    );
  });
  mid("encoder.mid");
  norm("encoder.norm_out");
  conv("encoder.conv_out", cfg.zChannels, C, 3);
  conv("pre_quant_conv", cfg.embedDim, cfg.zChannels, 1);
  out.push({ name: "embedding.weight", shape: [cfg.vocab, cfg.embedDim] });
  conv("post_quant_conv", cfg.zChannels, cfg.embedDim, 1);
  conv("decoder.conv_in", C, cfg.zChannels, 3);
  mid("decoder.mid");
  // Decoder level i (0 = highest resolution) runs at resolution r_i; it upsamples if i > 0.
  const levels = cfg.up.length + 1;
  const decRes: number[] = [];
  let r = resolutions.at(-1)!;
  for (let j = 0; j < levels; j++) {
    decRes.unshift(r);
    if (j < cfg.up.length) r *= cfg.up[j];
  }
  for (let i = 0; i < levels; i++) {
    level(
      `decoder.up.${i}`,
      cfg.numResBlocks + 1,
      cfg.decoderAttnResolutions.includes(decRes[i]),
      i > 0 ? ["upsample", 3] : undefined,
    );
  }
  norm("decoder.norm_out");
  conv("decoder.conv_out", cfg.inChannels, C, 3);
  return out;
}
