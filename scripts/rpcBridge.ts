/**
 * The in-process Hardhat network on a loopback HTTP port: what `npm run demo` gives the watch (a
 * process of its own that, like any indexer, reads the chain over JSON-RPC). Single and batched
 * requests, answered by the EIP-1193 provider the script itself uses, so both see one chain.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

export interface Eip1193 {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

interface RpcRequest {
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function answer(provider: Eip1193, r: RpcRequest) {
  const id = r.id ?? null;
  if (typeof r.method !== "string")
    return { jsonrpc: "2.0", id, error: { code: -32600, message: "method must be a string" } };
  try {
    const params = Array.isArray(r.params) ? r.params : [];
    return { jsonrpc: "2.0", id, result: await provider.request({ method: r.method, params }) };
  } catch (err) {
    const e = err as { code?: number; message?: string; data?: unknown };
    return {
      jsonrpc: "2.0",
      id,
      error: { code: typeof e.code === "number" ? e.code : -32000, message: e.message ?? String(err), data: e.data },
    };
  }
}

/** Serves `provider` on 127.0.0.1 (a free port unless given); resolves with its URL and a stop function. */
export async function serveProvider(provider: Eip1193, port = 0): Promise<{ url: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method !== "POST") {
      res.writeHead(405).end();
      return;
    }
    body(req)
      .then(async (text) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          return { jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } };
        }
        return Array.isArray(parsed)
          ? Promise.all(parsed.map((r) => answer(provider, r as RpcRequest)))
          : answer(provider, parsed as RpcRequest);
      })
      .then((out) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(out, (_k, v: unknown) => (typeof v === "bigint" ? "0x" + v.toString(16) : v)));
      })
      .catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
