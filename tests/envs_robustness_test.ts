/**
 * Robustness of the bridge: clear errors for bad input, dead or hung bridges, and no
 * Python process left behind after close(), a caller exception, or Deno exiting.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import { join } from "node:path";
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { BridgeError, BridgeProcess } from "../envs/bridge_process.ts";
import { ensurePython, EnvError } from "../envs/python_env.ts";
import { pidAlive, PYTHON, waitGone } from "./envs_test_utils.ts";

Deno.test("envs robustness: bad inputs give one clear error each", async () => {
  await rejects(AtariVectorEnv.create({ game: "NoSuchGame" }), (e: Error) => {
    assert(e instanceof EnvError, String(e));
    match(e.message, /unknown game 'no_such_game'; valid names: .*\bpong\b/);
    return true;
  });
  await rejects(AtariVectorEnv.create({ game: "Pong", frameSkip: 0 }), /frameSkip must be/);
  await rejects(ensurePython({ python: "/nonexistent/python3" }), /was not found/);
  await using env = await AtariVectorEnv.create({
    game: "Pong",
    numEnvs: 2,
    rejectInvalidActions: true,
  });
  await rejects(env.step([0, 0]), /needs reset\(\) first/);
  await rejects(env.reset([1, -5]), /seed -5 for environment 1/);
  await env.reset([1, 2]);
  await rejects(env.step([0, 18]), /action 18 for environment 1 is outside 0..17/);
  await rejects(env.step([0.5, 0]), /outside 0..17/);
  await rejects(env.step([0]), /expected 2 actions/);
  await rejects(env.step([2, 0]), /action 2 is not valid in Pong .*valid: 0,1,3,4,11,12/);
  const s = await env.step([1, 0]); // still usable after user errors
  assertEquals(s.obs.length, 2 * 84 * 84);
});

Deno.test("envs robustness: hung and crashed bridges give errors with stderr tail", async () => {
  const python = await ensurePython();
  const hung = await BridgeProcess.start({ python });
  await rejects(hung.request({ op: "sleep", seconds: 60 }, 300), (e: Error) => {
    assert(e instanceof BridgeError);
    match(e.message, /did not answer 'sleep' within 300 ms; killed it/);
    match(e.message, /bridge: sleeping 60 s/); // tail of the bridge's stderr
    return true;
  });
  await hung.close();
  assertEquals(await waitGone([hung.pid]), []);

  const dying = await BridgeProcess.start({ python });
  await rejects(dying.request({ op: "crash" }), (e: Error) => {
    match(e.message, /exited with code 3 during 'crash'/);
    match(e.message, /bridge: crashing on request/);
    return true;
  });
  await dying.close();
});

Deno.test("envs robustness: a killed bridge stops the whole batch", async () => {
  const env = await AtariVectorEnv.create({ game: "Pong", numEnvs: 2, numProcesses: 2 });
  await env.reset([1, 2]);
  Deno.kill(env.pids[1], "SIGKILL");
  await rejects(env.step([0, 0]), /exited with code|closed its output/);
  assertEquals(await waitGone(env.pids), [], "every bridge stopped");
  await rejects(env.step([0, 0]), /closed/);
  await env.close();
});

Deno.test("envs robustness: protocol version is checked at start", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fake = join(dir, "fake.py");
    await Deno.writeTextFile(
      fake,
      "import sys, msgpack\nb = msgpack.packb({'type': 'hello', 'protocol': 99})\n" +
        "sys.stdout.buffer.write(len(b).to_bytes(4, 'little') + b); sys.stdout.flush()\n" +
        "sys.stdin.read()\n",
    );
    const wrapper = join(dir, "python");
    await Deno.writeTextFile(wrapper, `#!/bin/sh\nexec ${PYTHON} ${fake}\n`);
    await Deno.chmod(wrapper, 0o755);
    await rejects(
      BridgeProcess.start({ python: wrapper }),
      /protocol mismatch: expected 1, got 99/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("envs robustness: ROM directory loads other ROM dumps and reports their md5", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using bundled = await AtariVectorEnv.create({ game: "Pong" });
    assertEquals(bundled.envs[0].md5, "60e0ea3cbe0913d39803477945e9e5ec"); // ale-py md5.json
    // A different dump: one byte changed, so ale-py's md5 list does not know it.
    const rom = await Deno.readFile(bundled.envs[0].romPath);
    rom[100] ^= 0xff;
    await Deno.writeFile(join(dir, "pong.bin"), rom);
    await Deno.writeFile(join(dir, "not_a_game.bin"), rom);
    const md5 = (await new Deno.Command(PYTHON, {
      args: [
        "-c",
        `import hashlib;print(hashlib.md5(open('${dir}/pong.bin','rb').read()).hexdigest())`,
      ],
      stdout: "piped",
    }).output()).stdout;
    await using env = await AtariVectorEnv.create({ game: "Pong", romDir: dir });
    assertEquals(env.envs[0].romPath, join(dir, "pong.bin"));
    assertEquals(env.envs[0].md5, new TextDecoder().decode(md5).trim());
    assert(env.envs[0].md5 !== bundled.envs[0].md5);
    assertEquals(env.envs[0].minimalActions, bundled.envs[0].minimalActions);
    await env.reset([0]);
    await env.step([1]);
    // Only supported names are offered: ALE would exit on an unidentifiable ROM.
    await rejects(
      AtariVectorEnv.create({ game: "not_a_game", romDir: dir }),
      /unknown game 'not_a_game' in .*; valid names: pong$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const mode of ["throw", "exit", "forget", "hang"]) {
  Deno.test(`envs robustness: no orphaned bridges when the caller ${mode}s`, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./envs_orphan_child.ts", import.meta.url).pathname, mode],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const pids = JSON.parse(text.split("\n")[0]) as number[];
    assertEquals(pids.length, 2);
    assert(pids.every(pidAlive), "bridges were running");
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    if (mode === "hang") {
      await new Promise((r) => setTimeout(r, 200));
      child.kill("SIGKILL"); // no unload handler runs: the bridges see stdin EOF
    }
    await w.close().catch(() => {});
    const status = await child.status;
    await reader.cancel();
    if (mode !== "hang") assertEquals(status.code, mode === "throw" ? 1 : 0);
    assertEquals(await waitGone(pids), [], "no bridge outlives the caller");
  });
}

Deno.test("envs robustness: a refused step steps no environment in any process", async () => {
  await using env = await AtariVectorEnv.create({
    game: "Pong",
    numEnvs: 2,
    numProcesses: 2,
    maxEpisodeFrames: 40, // 10 agent steps
  });
  await rejects(env.reset([null, 1]), /environment 0 has never been reset/);
  await env.reset([1, 2]);
  for (let t = 0; t < 5; t++) await env.step([0, 0]);
  await env.reset([null, 3]); // env 1 restarts: 5 steps behind env 0
  let last = await env.step([0, 0]);
  for (let t = 0; t < 4; t++) last = await env.step([0, 0]);
  assertEquals(last.episodes.map((e) => [e.env, e.length, e.truncated]), [[0, 10, true]]);
  await rejects(env.step([0, 0]), /environment 0 needs reset\(\) first \(its episode ended/);
  await env.reset([4, null]);
  const steps = [];
  for (let t = 0; t < 5; t++) steps.push(await env.step([0, 0]));
  // env 1 was not stepped by the refused call: it ends exactly at its own 10th step
  assertEquals(steps.map((s) => s.truncations[1]), [0, 0, 0, 0, 1]);
  assertEquals(steps[4].episodes.map((e) => [e.env, e.length]), [[1, 10]]);
});
