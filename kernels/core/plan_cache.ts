/**
 * Memoized kernel plans: ops build their WGSL (and grid) once per (op, shapes, dtypes, flags)
 * key and reuse the same `Kernel` object afterwards, so a warm step generates no WGSL, hashes
 * no source text, and the runtime finds the compiled pipeline by the object's identity.
 *
 * The key must name everything the builder reads. `JOWA_VERIFY_PLANS=1` rebuilds on every
 * hit and throws when the rebuilt plan differs from the cached one (a key missing a field),
 * for tests and debugging.
 *
 * @module
 */

const MAX_ENTRIES = 16_384;
const cache = new Map<string, unknown>();
let verify = false;
try {
  verify = Deno.env.get("JOWA_VERIFY_PLANS") === "1";
} catch {
  // No env permission: verification stays off.
}

/** Turn plan verification on or off (tests); returns the previous setting. */
export function setPlanVerification(on: boolean): boolean {
  const before = verify;
  verify = on;
  return before;
}

/** The plan cached under `key`, built by `build()` on the first request. */
export function planCache<T>(key: string, build: () => T): T {
  const hit = cache.get(key) as T | undefined;
  if (hit !== undefined) {
    if (verify) {
      const fresh = JSON.stringify(build());
      if (fresh !== JSON.stringify(hit)) {
        throw new Error(`plan cache: key '${key}' maps to two different plans (key incomplete)`);
      }
    }
    return hit;
  }
  const plan = build();
  // Bounded: evict the oldest entry (its pipeline stays compiled in the runtime).
  if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(key, plan);
  return plan;
}

/** Number of cached plans (tests, benchmarks). */
export function planCacheSize(): number {
  return cache.size;
}

const interned = new Map<string, number>();

/**
 * A small number standing for a (long, usually constant) string in plan keys: constant
 * strings keep their hash cached, so this lookup is cheap, and the key stays short.
 */
export function internId(text: string): number {
  let id = interned.get(text);
  if (id === undefined) interned.set(text, id = interned.size);
  return id;
}
