/**
 * A provider that can be cut off: while `link.down`, every call made through it fails as an
 * unreachable node does (ECONNREFUSED). The demo and the tests use it to show a device deciding
 * with the chain out of reach, without stopping the chain everyone else uses.
 */
import type { Provider } from "ethers";

export function switchable<P extends Provider>(p: P): { provider: P; link: { down: boolean } } {
  const link = { down: false };
  const provider = new Proxy(p, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) =>
        link.down
          ? Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))
          : (v as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { provider, link };
}
