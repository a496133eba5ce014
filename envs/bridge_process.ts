/**
 * One ALE bridge subprocess: spawn, protocol handshake, request/reply with timeout,
 * and a shutdown that never leaves the Python process behind.
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { encodeFrame, FrameReader, PROTOCOL_VERSION } from "./protocol.ts";
import { EnvError } from "./python_env.ts";

/** The bridge process died, stopped answering, or failed internally. */
export class BridgeError extends Error {
  /** Creates the error; `stderrTail` is the end of the bridge's log. */
  constructor(message: string, readonly stderrTail: string = "") {
    super(stderrTail ? `${message}\n--- bridge stderr (tail) ---\n${stderrTail}` : message);
    this.name = "BridgeError";
  }
}

/** The bridge's greeting. */
export interface BridgeHello {
  /** Always "hello". */
  type: "hello";
  /** The bridge's protocol version. */
  protocol: number;
  /** Its process id. */
  pid: number;
  /** ale-py version. */
  ale: string;
  /** numpy version. */
  numpy: string;
  /** Python version. */
  python: string;
}

const PY_FILES = ["ale_bridge.py", "ale_batch.py", "area_resize.py"];
let remoteScript: Promise<string> | undefined;

/** Path of ale_bridge.py on disk; fetched into a temp dir when loaded from a URL. */
export function bridgeScript(): Promise<string> {
  const here = new URL("./ale_bridge.py", import.meta.url);
  if (here.protocol === "file:") return Promise.resolve(fileURLToPath(here));
  remoteScript ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "jowa_bridge_" });
    for (const f of PY_FILES) {
      const res = await fetch(new URL(`./${f}`, import.meta.url));
      if (!res.ok) throw new EnvError(`cannot fetch bridge file ${f}: HTTP ${res.status}`);
      await Deno.writeTextFile(join(dir, f), await res.text());
    }
    return join(dir, "ale_bridge.py");
  })();
  return remoteScript;
}

const live = new Set<BridgeProcess>();
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  // Last resort on a normal exit without close(); a killed parent closes our
  // stdin pipe instead, and the bridge exits on EOF.
  globalThis.addEventListener("unload", () => {
    for (const p of live) p.kill();
  });
}

/** Options for {@link BridgeProcess.start}. */
export interface BridgeStartOptions {
  /** Python interpreter path. */
  python: string;
  /** Milliseconds to wait for the hello frame (default 60 000). */
  startTimeoutMs?: number;
}

/** A running bridge. Requests are strictly sequential (one in flight). */
export class BridgeProcess {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #stdout: ReadableStreamDefaultReader<Uint8Array>;
  #frames: FrameReader;
  #logPath: string;
  #closed = false;
  #busy = false;
  /** The bridge's greeting (versions, pid). */
  hello!: BridgeHello;

  private constructor(child: Deno.ChildProcess, logPath: string) {
    this.#child = child;
    this.#logPath = logPath;
    this.#writer = child.stdin.getWriter();
    this.#stdout = child.stdout.getReader();
    this.#frames = new FrameReader(this.#stdout);
  }

  /** OS process id of the bridge. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Spawns the bridge and checks the protocol version. */
  static async start(opts: BridgeStartOptions): Promise<BridgeProcess> {
    const script = await bridgeScript();
    const logPath = await Deno.makeTempFile({ prefix: "jowa_bridge_", suffix: ".log" });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(opts.python, {
        args: ["-u", script, "--log", logPath],
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      }).spawn();
    } catch (e) {
      await Deno.remove(logPath).catch(() => {});
      if (e instanceof Deno.errors.NotFound) {
        throw new EnvError(`Python interpreter '${opts.python}' was not found`);
      }
      throw e;
    }
    child.unref();
    const p = new BridgeProcess(child, logPath);
    live.add(p);
    hookUnload();
    try {
      const hello = await p.#receive(
        opts.startTimeoutMs ?? 60_000,
        "start",
      ) as unknown as BridgeHello;
      if (hello?.type !== "hello" || hello.protocol !== PROTOCOL_VERSION) {
        throw new BridgeError(
          `bridge protocol mismatch: expected ${PROTOCOL_VERSION}, got ${hello?.protocol}`,
        );
      }
      p.hello = hello;
      return p;
    } catch (e) {
      await p.close();
      throw e;
    }
  }

  /** The last `maxBytes` of the bridge's stderr log. */
  stderrTail(maxBytes = 4000): string {
    try {
      const data = Deno.readFileSync(this.#logPath);
      return new TextDecoder().decode(data.subarray(Math.max(0, data.length - maxBytes)))
        .trimEnd();
    } catch {
      return "";
    }
  }

  async #receive(timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((res) => {
      timer = setTimeout(() => res("timeout"), timeoutMs);
    });
    let msg: unknown;
    try {
      msg = await Promise.race([this.#frames.next(), timeout]);
    } catch (e) {
      msg = e instanceof Error ? e : new Error(String(e));
    } finally {
      clearTimeout(timer);
    }
    if (msg === "timeout") {
      const tail = this.stderrTail();
      this.kill();
      throw new BridgeError(
        `ALE bridge (pid ${this.pid}) did not answer '${what}' within ${timeoutMs} ms; killed it`,
        tail,
      );
    }
    if (msg === null || msg instanceof Error) {
      const status = await this.#waitExit(2000);
      const tail = this.stderrTail();
      const how = status ? `exited with code ${status.code}` : "closed its output";
      throw new BridgeError(`ALE bridge (pid ${this.pid}) ${how} during '${what}'`, tail);
    }
    return msg as Record<string, unknown>;
  }

  async #waitExit(ms: number): Promise<Deno.CommandStatus | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    this.#child.ref();
    const r = await Promise.race([
      this.#child.status,
      new Promise<null>((res) => timer = setTimeout(() => res(null), ms)),
    ]);
    clearTimeout(timer);
    this.#child.unref();
    return r;
  }

  /**
   * Sends one request and returns the reply's fields. Throws {@link EnvError} for
   * errors the bridge attributes to the caller's input, {@link BridgeError} otherwise.
   */
  async request(
    msg: Record<string, unknown>,
    timeoutMs = 60_000,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) throw new BridgeError("ALE bridge is closed");
    if (this.#busy) throw new BridgeError("ALE bridge request already in flight");
    this.#busy = true;
    try {
      try {
        await this.#writer.write(encodeFrame(msg));
      } catch {
        // A dead bridge breaks the pipe; the read below reports why.
      }
      const reply = await this.#receive(timeoutMs, String(msg.op));
      if (reply.ok !== true) {
        if (reply.user) throw new EnvError(String(reply.error));
        throw new BridgeError(`ALE bridge failed: ${reply.error}`, this.stderrTail());
      }
      return reply;
    } finally {
      this.#busy = false;
    }
  }

  /** Sends SIGKILL without waiting (safe to call at any time, also from `unload`). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Asks the bridge to exit, waits briefly, kills it if needed, and frees resources. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    live.delete(this);
    // Closing stdin is the exit request: the bridge leaves on EOF.
    await this.#writer.close().catch(() => {});
    if (!(await this.#waitExit(3000))) {
      this.kill();
      await this.#waitExit(3000);
    }
    await this.#stdout.cancel().catch(() => {});
    await Deno.remove(this.#logPath).catch(() => {});
  }
}
