/** The area resizer on its own: random and tie-heavy images of several sizes. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { PYTHON } from "./envs_test_utils.ts";

async function check(python: string, extra: string[] = []) {
  const script = new URL("./envs_area_check.py", import.meta.url).pathname;
  const r = await new Deno.Command(python, { args: [script, ...extra], stderr: "piped" }).output();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

Deno.test("envs area resize: within the exact area mean everywhere, exact off ties", async () => {
  const r = await check(PYTHON);
  assertEquals(r.bad, 0);
  assert(r.checked > 100_000 && r.ties > 1000, JSON.stringify(r));
});

const CV2 = Deno.env.get("JOWA_CV2_PYTHON");
Deno.test({
  name: "envs area resize: bit-identical to cv2.INTER_AREA (needs JOWA_CV2_PYTHON)",
  ignore: !CV2,
  fn: async () => assertEquals((await check(CV2!, ["--cv2"])).bad, 0),
});
