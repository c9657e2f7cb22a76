/**
 * A front like the watch's: `console/dist` at `/`, the index API (`/watch`, `/graphql`, `/sql`)
 * proxied on the same origin. With `tamper`, the shipment route is rewritten on its way to the
 * browser — the attack the tampering test mounts (a watch that lies), and a lagging indexer. The
 * bench serves a bare indexer with it.
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import Fastify from "fastify";
import httpProxy from "@fastify/http-proxy";
import fastifyStatic from "@fastify/static";

export const DIST = path.join(import.meta.dirname, "..", "..", "console", "dist");

/** Builds the console (type check + Vite) into console/dist, as `npm run console:build` does (a production build whatever NODE_ENV the caller runs with). */
export function buildConsole() {
  execFileSync("npm", ["run", "--silent", "console:build"], {
    cwd: path.join(DIST, "..", ".."),
    stdio: "inherit",
    env: { ...process.env, NODE_ENV: "production" },
  });
}

export type Tamper = (path: string, body: Record<string, unknown>) => Record<string, unknown>;

/** Serves the console with the watch's index API at `upstream` (a watch, or a bare indexer). */
export async function serveConsole(upstream: string, opts: { tamper?: Tamper } = {}) {
  const { tamper } = opts;
  const app = Fastify();
  if (tamper)
    app.get("/watch/shipments/:id", async (req, reply) => {
      const res = await fetch(`${upstream}${req.url}`);
      const body = (await res.json()) as Record<string, unknown>;
      reply.code(res.status).send(res.ok ? tamper(req.url, body) : body);
    });
  for (const prefix of ["/watch", "/graphql", "/sql"])
    await app.register(httpProxy, { upstream, prefix, rewritePrefix: prefix });
  await app.register(fastifyStatic, { root: DIST, prefix: "/", wildcard: false });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  return { url, close: () => app.close() };
}
