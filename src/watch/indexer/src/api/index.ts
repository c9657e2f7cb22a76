/**
 * The indexer's HTTP API: Ponder's GraphQL (`/graphql`) and SQL over HTTP (`/sql/*`), and the
 * watch's JSON routes (`/watch/*`). Every `/watch` answer carries the block the index has reached
 * and how far it lags the chain head, so a reader knows how fresh it is.
 */
import { Hono } from "hono";
import { db, publicClients } from "ponder:api";
import schema from "ponder:schema";
import { client, graphql } from "ponder";
import { freshness } from "./freshness.js";
import { alertsFrom, channelView, deviceView, fleetOf, lockView, shipmentView } from "./views.js";

const app = new Hono();

app.use("/sql/*", client({ db, schema }));
app.use("/graphql", graphql({ db, schema }));

const chain = publicClients.custos;

/** A route's answer with the index's freshness, or 404 naming what was not found. */
async function answer<T>(read: () => Promise<T | null>, what: string) {
  const [status, body] = await Promise.all([freshness(db, chain), read()]);
  if (body === null)
    return {
      code: 404 as const,
      json: { ...status, error: `${what} is not in the index (as of block ${status.indexedBlock})` },
    };
  return { code: 200 as const, json: { ...status, ...body } };
}

function bad(field: string, value: string, fix: string) {
  return { error: `${field} must be ${fix}, not ${JSON.stringify(value)}` };
}

const DECIMAL = /^[0-9]{1,78}$/;
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

app.get("/watch/status", async (c) => c.json(await freshness(db, chain)));

app.get("/watch/alerts", async (c) => {
  const given = c.req.query("fromBlock") ?? "0";
  if (!DECIMAL.test(given)) return c.json(bad("fromBlock", given, "a decimal block number"), 400);
  const status = await freshness(db, chain);
  // Only what the index has finished: alerts up to the indexed block, never a block half-written.
  return c.json({
    indexedBlock: status.indexedBlock,
    alerts: await alertsFrom(db, BigInt(given), BigInt(status.indexedBlock)),
  });
});

app.get("/watch/devices/:id", async (c) => {
  const id = c.req.param("id");
  if (!DECIMAL.test(id)) return c.json(bad("device id", id, "a decimal device id"), 400);
  const r = await answer(() => deviceView(db, BigInt(id)), `device ${id}`);
  return c.json(r.json, r.code);
});

app.get("/watch/owners/:address/devices", async (c) => {
  const address = c.req.param("address");
  if (!ADDRESS.test(address)) return c.json(bad("owner address", address, "0x + 40 hex digits"), 400);
  const limit = c.req.query("limit") ?? "100";
  const offset = c.req.query("offset") ?? "0";
  if (!DECIMAL.test(limit) || Number(limit) < 1 || Number(limit) > 1000)
    return c.json(bad("limit", limit, "1 to 1000"), 400);
  if (!DECIMAL.test(offset)) return c.json(bad("offset", offset, "a whole number ≥ 0"), 400);
  const after = c.req.query("after");
  if (after !== undefined && !DECIMAL.test(after)) return c.json(bad("after", after, "a decimal device id"), 400);
  const r = await answer(
    () =>
      fleetOf(db, address.toLowerCase() as `0x${string}`, {
        limit: Number(limit),
        offset: Number(offset),
        after: after === undefined ? undefined : BigInt(after),
      }),
    `owner ${address}`,
  );
  return c.json(r.json, r.code);
});

app.get("/watch/shipments/:id", async (c) => {
  const id = c.req.param("id");
  if (!BYTES32.test(id)) return c.json(bad("shipment id", id, "0x + 64 hex digits"), 400);
  const r = await answer(() => shipmentView(db, id.toLowerCase() as `0x${string}`), `shipment ${id}`);
  return c.json(r.json, r.code);
});

app.get("/watch/channels/:id", async (c) => {
  const id = c.req.param("id");
  if (!BYTES32.test(id)) return c.json(bad("channel id", id, "0x + 64 hex digits"), 400);
  const r = await answer(() => channelView(db, id.toLowerCase() as `0x${string}`), `channel ${id}`);
  return c.json(r.json, r.code);
});

app.get("/watch/locks/:id", async (c) => {
  const id = c.req.param("id");
  if (!DECIMAL.test(id)) return c.json(bad("lock id", id, "a decimal device id"), 400);
  const r = await answer(() => lockView(db, BigInt(id)), `lock ${id}`);
  return c.json(r.json, r.code);
});

export default app;
