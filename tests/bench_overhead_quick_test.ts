/**
 * `deno task bench overhead --quick --json FILE` runs (dry run, tiny config) and writes the
 * issue's JSON: both bare-API references and, per step, the counters plus host and encode
 * milliseconds. The replayed rows hold the capture's promises on the real benchmark: no
 * pipeline compiled, no bind group created, at most 4 uploads, the same dispatches as eager.
 */
import assert from "node:assert/strict";
import * as path from "node:path";

const FIELDS = [
  "dispatches",
  "passes",
  "submits",
  "uploads",
  "bindGroupsCreated",
  "pipelinesCompiled",
  "hostMs",
  "encodeMs",
];

Deno.test({
  name: "bench overhead --quick --json: counters of every step; replays compile and bind nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "jowa-bench-overhead-" });
    try {
      const file = path.join(tmp, "overhead.json");
      const res = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "bench/overhead_bench.ts", "--quick", "--json", file],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
      assert.equal(res.code, 0, log);
      const out = JSON.parse(await Deno.readTextFile(file));
      for (const k of ["rawUsPerDispatch", "rawBoundUsPerDispatch"]) {
        assert.ok(typeof out[k] === "number" && out[k] > 0, `${k}: ${out[k]}`);
      }
      const tiny = out.tiny;
      const steps = ["train", "train_stage1", "plan_n1", "plan_n16"];
      for (const s of [...steps, ...steps.map((s) => `${s}_replay`)]) {
        assert.deepEqual(Object.keys(tiny[s]).sort(), [...FIELDS].sort(), `${s}: ${log}`);
        assert.ok(tiny[s].dispatches > 0, s);
        assert.ok(tiny[s].encodeMs <= tiny[s].hostMs + 1e-3, `${s}: encode within host time`);
      }
      for (const s of steps) {
        const r = tiny[`${s}_replay`];
        assert.equal(r.pipelinesCompiled, 0, `${s}_replay compiles nothing`);
        assert.equal(r.bindGroupsCreated, 0, `${s}_replay creates no bind group`);
        assert.ok(r.uploads <= 4, `${s}_replay: ${r.uploads} uploads`);
        // The planner's replay adds the staging copy's submit and the current tokens' copy.
        assert.ok(Math.abs(r.dispatches - tiny[s].dispatches) <= 2, `${s}: same work replayed`);
      }
      assert.doesNotMatch(log, /fell back|failed:/);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
