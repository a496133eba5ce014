/**
 * `deno task collect` reliability: an unwritable --out fails in one line before any emulator
 * starts; one terminal Ctrl-C (SIGINT to the whole process group, which `deno task` forwards
 * a second time) always leaves complete stores; a crashed bridge leaves incomplete stores
 * that a rerun resumes instead of calling them complete.
 */
import { deepStrictEqual as assertEquals, match, ok as assert, rejects } from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { collect } from "../offline/collect.ts";
import { openStore } from "../offline/store.ts";
import { InterruptGate } from "../util/interrupt.ts";
import { collectCli as cli, interruptCollect, withTempDir } from "./helpers/collect_cli.ts";

const ROOT = new URL("..", import.meta.url).pathname;

const tempDir = (fn: (dir: string) => Promise<void>) => withTempDir("reliability_collect_", fn);

/** Pids of this process's running emulator bridges. */
function bridgePids(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (ppid === Deno.pid && cmd.includes("ale_bridge.py")) pids.push(Number(e.name));
    } catch {
      // process gone meanwhile
    }
  }
  return pids;
}

Deno.test("reliability collect: unwritable --out fails in one line before any emulator", async () => {
  await tempDir(async (dir) => {
    const file = join(dir, "a_file");
    fs.writeFileSync(file, "keep me");
    const cases: [string, RegExp][] = [
      [join(file, "stores"), /ENOTDIR/],
      [file, /is an existing file, not a directory/],
      ["/sys/jowa_no_such_dir", /cannot write there/],
    ];
    for (const [out, why] of cases) {
      const r = await cli(["--out", out, "--steps", "10"]);
      assertEquals(r.code, 1, r.err);
      assertEquals(r.err.split("\n").length, 1, r.err);
      assert(r.err.startsWith(`collect: --out ${out}: `), r.err);
      match(r.err, why);
    }
    assertEquals(fs.readFileSync(file, "utf8"), "keep me");
    // The library checks before starting bridges too.
    await rejects(collect({ out: join(file, "x"), games: ["Pong"], steps: 5 }), /ENOTDIR/);
    assertEquals(bridgePids(), []);
  });
});

Deno.test("reliability collect: SIGINTs of one Ctrl-C are one stop; a later one exits", () => {
  let t = 0;
  const gate = new InterruptGate(1000, () => t);
  assertEquals(gate.next(), "stop");
  t = 5;
  assertEquals(gate.next(), "ignore"); // deno task's forwarded copy
  t = 999;
  assertEquals(gate.next(), "ignore");
  t = 1500;
  assertEquals(gate.next(), "exit"); // a deliberate second Ctrl-C
});

Deno.test("reliability collect: Ctrl-C to the process group of `deno task collect` leaves complete stores", async () => {
  for (let attempt = 0; attempt < 4; attempt++) {
    await tempDir(async (dir) => {
      // setsid: a new process group, as a terminal's foreground job has.
      const child = new Deno.Command("setsid", {
        args: ["deno", "task", "collect", "--out", dir, "--games", "Pong", "--steps", "1000000"],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await interruptCollect(child, dir, () => {
        const stat = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
        const pgid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
        assertEquals(pgid, child.pid, "setsid made the child a group leader");
        Deno.kill(-pgid, "SIGINT"); // what a terminal does on Ctrl-C
      });
      assert(!fs.existsSync(join(dir, "Pong", "journal.json")), `attempt ${attempt}`);
    });
  }
});

Deno.test("reliability collect: a crashed bridge leaves a resumable store, not a complete one", async () => {
  await tempDir(async (dir) => {
    const base = { out: dir, games: ["Pong"], steps: 600, envsPerGame: 2, seed: 3 };
    let killed = 0;
    await rejects(
      collect({
        ...base,
        onProgress: (done) => {
          if (done >= 200 && killed === 0) {
            const pids = bridgePids();
            assertEquals(pids.length, 1);
            Deno.kill(pids[0], "SIGKILL");
            killed = done;
          }
        },
      }),
      (e: Error) => {
        match(e.message.split("\n")[0], /kept incomplete: rerun to resume them/);
        return true;
      },
    );
    assert(killed > 0);
    const store = join(dir, "Pong");
    assert(!fs.existsSync(join(store, "manifest.json")), "not marked complete");
    const journal = JSON.parse(fs.readFileSync(join(store, "journal.json"), "utf8"));
    assertEquals(journal.transitions, killed, "every row before the crash is kept");
    const kept = fs.readFileSync(join(store, "actions.u8"));
    // Other options cannot resume it silently.
    await rejects(collect({ ...base, seed: 4 }), /journal\.json: .*other options.*--restart/);
    // The same options resume it up to `steps` rows, keeping the rows collected before.
    const s = await collect(base);
    assertEquals(s.games[0].transitions, 600);
    const st = openStore(store, { verify: true });
    assertEquals(st.numRows, 600);
    assertEquals(Uint8Array.from(st.actions.subarray(0, killed)), Uint8Array.from(kept));
    assertEquals(st.truncated[st.numEpisodes - 1], 1);
    st.close();
    // Now complete: a rerun says so instead of collecting again.
    await rejects(collect(base), /already complete/);
  });
});
