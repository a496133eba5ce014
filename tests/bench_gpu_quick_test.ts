/**
 * `deno task bench gpu --quick --json FILE` runs on the CPU adapter and writes the quick figures
 * (the keys torch_reference.py's quick mode writes), and scripts/bench.ts passes `--json FILE`
 * through to the benchmark the way `.gpu/acceptance.sh` calls it.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { splitBenchArgs } from "../scripts/bench.ts";

Deno.test("bench runner: filters up to the first flag, the rest (values too) pass through", () => {
  assert.deepEqual(splitBenchArgs(["gpu", "--json", "/tmp/a/ours.json"]), {
    filters: ["gpu"],
    passThrough: ["--json", "/tmp/a/ours.json"],
  });
  assert.deepEqual(splitBenchArgs(["gpu", "--quick", "--json", "f"]), {
    filters: ["gpu"],
    passThrough: ["--quick", "--json", "f"],
  });
  assert.deepEqual(splitBenchArgs(["world", "eval", "--", "--quick"]), {
    filters: ["world", "eval"],
    passThrough: ["--quick"],
  });
  assert.deepEqual(splitBenchArgs([]), { filters: [], passThrough: [] });
});

Deno.test({
  name: "bench gpu --quick --json: runs on the CPU adapter and writes the figures",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "jowa-bench-gpu-" });
    try {
      const file = path.join(tmp, "ours.json");
      const child = new Deno.Command(Deno.execPath(), {
        args: ["task", "bench", "gpu", "--quick", "--json", file],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // A hung adapter must fail the test, not the whole suite.
      const timer = setTimeout(() => child.kill("SIGKILL"), 15 * 60_000);
      const res = await child.output();
      clearTimeout(timer);
      const log = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
      assert.equal(res.code, 0, log);
      assert.match(log, /=== gpu_bench\.ts/); // the runner picked exactly this benchmark
      assert.doesNotMatch(log, /=== (?!gpu_bench)/);
      const out = JSON.parse(await Deno.readTextFile(file));
      // train_tiny_f16 where the adapter has shader-f16 (lavapipe does).
      const f16 = "train_tiny_f16" in out ? ["train_tiny_f16"] : [];
      assert.deepEqual(
        Object.keys(out).sort(),
        ["device", "matmul_512_fp32", "plan_tiny_n1", ...f16, "train_tiny_fp32"],
      );
      assert.equal(typeof out.device, "string");
      for (const k of ["matmul_512_fp32", "plan_tiny_n1", "train_tiny_fp32", ...f16]) {
        assert.ok(
          typeof out[k] === "number" && out[k] > 0 && Number.isFinite(out[k]),
          `${k}: ${out[k]}`,
        );
      }
      // ms figures are per step: a tiny step cannot take under a microsecond or over 10 minutes.
      for (const k of ["plan_tiny_n1", "train_tiny_fp32", ...f16]) {
        assert.ok(out[k] > 1e-3 && out[k] < 6e5, k);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
