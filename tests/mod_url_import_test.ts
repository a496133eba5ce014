/**
 * mod.ts must work when imported from a URL: serve the repository from a throwaway HTTP
 * server on 127.0.0.1 and import it from a directory without deno.json (so no import map).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

Deno.test("mod.ts imports from a URL and computes through the engine", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("no", { status: 403 });
      try {
        const body = await Deno.readFile(join(root, path));
        return new Response(body, { headers: { "content-type": "application/typescript" } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const dir = await Deno.makeTempDir();
  try {
    const url = `http://127.0.0.1:${server.addr.port}/mod.ts`;
    await Deno.writeTextFile(
      join(dir, "main.ts"),
      `import { backward, initRuntime, matmul, sumAll, tensor } from "${url}";
await initRuntime();
const w = tensor([1, 2, 3, 4], [2, 2]);
w.requiresGrad = true;
const y = matmul(w, w);
backward(sumAll(y));
console.log(JSON.stringify({ y: [...await y.read()], g: [...await w.grad!.read()] }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-webgpu", "--quiet", "main.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `child failed: ${stderr.slice(-2000)}`);
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
    const { y, g } = JSON.parse(line);
    // W·W for W = [[1,2],[3,4]]; d/dW sum(W·W) = 1·W^T + W^T·1.
    assert.deepEqual(y, [7, 10, 15, 22]);
    assert.deepEqual(g, [7, 11, 9, 13]);
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(dir, { recursive: true });
  }
});
