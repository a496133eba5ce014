/**
 * First-use setup: a Python without the bridge packages gets a project-local venv; a
 * failing install or a missing interpreter gives one clear error.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { ensurePython, EnvError, hasBridgePackages } from "../envs/python_env.ts";
import { PYTHON } from "./envs_test_utils.ts";

async function withBareVenv(fn: (python: string, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "envs_setup_" });
  try {
    const bare = join(dir, "bare");
    const r = await new Deno.Command(PYTHON, { args: ["-m", "venv", "--without-pip", bare] })
      .output();
    assertEquals(r.code, 0);
    const python = join(bare, "bin", "python");
    assertEquals(await hasBridgePackages(python), false);
    await fn(python, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("envs setup: missing interpreters and packages give one clear error", async () => {
  await rejects(
    ensurePython({ python: null, basePython: "/nonexistent/python3", venvDir: "/nonexistent/v" }),
    {
      name: "EnvError",
      message: "/nonexistent/python3 was not found; install Python 3 or set JOWA_PYTHON",
    },
  );
  await withBareVenv(async (python) => {
    // A named interpreter is never installed into: it must already have the packages.
    await rejects(ensurePython({ python }), (e: Error) => {
      assert(e instanceof EnvError);
      match(e.message, /lacks the bridge packages; run: .* -m pip install ale-py==0.12.1/);
      return true;
    });
  });
});

Deno.test("envs setup: a failed pip install is reported with pip's output", async () => {
  await withBareVenv(async (python, dir) => {
    // The venv exists but has no pip (fast and offline): the install step must fail.
    const venv = join(dir, ".venv");
    const mk = await new Deno.Command(python, { args: ["-m", "venv", "--without-pip", venv] })
      .output();
    assertEquals(mk.code, 0);
    await rejects(
      ensurePython({ python: null, basePython: python, venvDir: venv }),
      (e: Error) => {
        assert(e instanceof EnvError);
        match(e.message, /pip install into .*\.venv failed:\n.*No module named pip/);
        return true;
      },
    );
  });
});

Deno.test({
  name: "envs setup: creates a venv and installs the pinned packages (JOWA_TEST_VENV=1)",
  ignore: Deno.env.get("JOWA_TEST_VENV") !== "1", // needs PyPI; ~15 s
  fn: async () => {
    await withBareVenv(async (python, dir) => {
      const venv = join(dir, ".venv");
      const got = await ensurePython({ python: null, basePython: python, venvDir: venv });
      assertEquals(got, join(venv, "bin", "python"));
      assert(await hasBridgePackages(got));
    });
  },
});
