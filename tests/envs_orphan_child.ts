/**
 * Child program for envs_robustness_test.ts: opens a 2-process environment, prints the
 * bridge pids as one JSON line, waits for a line on stdin, then ends the way argv[0] says, never calling close().
 */
import { AtariVectorEnv } from "../envs/vector_env.ts";

const mode = Deno.args[0];
const env = await AtariVectorEnv.create({ game: "Pong", numEnvs: 2, numProcesses: 2 });
await env.reset([1, 2]);
console.log(JSON.stringify(env.pids));
// Wait for the parent's go-ahead so it can see the bridges alive first.
await Deno.stdin.readable.getReader().read();
if (mode === "throw") throw new Error("caller failed");
if (mode === "exit") Deno.exit(0);
if (mode === "hang") await new Promise(() => setInterval(() => {}, 1000));
// mode "forget": fall off the end without close(); Deno must still exit
