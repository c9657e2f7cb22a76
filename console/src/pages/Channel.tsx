/** Channel: deposit, paid and refund over time, the vouchers claimed (each re-checked from the chain), close state and deadline. */
import { useQuery } from "@tanstack/react-query";
import { formatEther } from "viem";
import { watchGet, type ChannelView } from "../api.js";
import { useSettings, useVerifier } from "../context.js";
import { checkVoucher, short } from "../verify.js";
import { Badge, FreshnessNote, Link, Loaded, Table, time } from "../ui.js";

const eth = (v: unknown) => (v === null || v === undefined ? "—" : `${formatEther(BigInt(String(v)))} ETH`);

export function ChannelPage({ id }: { id: string }) {
  const s = useSettings();
  const valid = /^0x[0-9a-fA-F]{64}$/.test(id ?? "");
  const q = useQuery({
    queryKey: ["channel", s.watch, id],
    queryFn: () => watchGet<ChannelView>(s.watch, `/watch/channels/${id}`),
    enabled: valid,
  });
  return (
    <>
      <h1 tabIndex={-1}>Channel {valid ? short(id) : ""}</h1>
      {!valid ? (
        <p className="state error" role="alert">
          A channel id is 0x and 64 hex digits; “{id}” is not.
        </p>
      ) : (
        <Loaded q={q} what="the channel">
          {(v) => <Channel v={v} />}
        </Loaded>
      )}
    </>
  );
}

function Channel({ v }: { v: ChannelView }) {
  const s = useSettings();
  const ctx = useVerifier("paymentChannels", v.chainId);
  const c = v.channel;
  const paying = v.events.filter((e) => e.kind === "claim" || e.kind === "closed");
  const checks = useQuery({
    queryKey: ["channel-checks", s.rpc, ctx.contract, JSON.stringify(paying)],
    queryFn: () => Promise.all(paying.map((e) => checkVoucher(ctx, e, String(c.id)))),
    refetchInterval: false,
  });
  const state = c.closed ? "closed" : c.closesAt ? `closing: ends ${time(c.closesAt)}` : "open";
  return (
    <>
      <FreshnessNote f={v} />
      <div className="cards">
        <div>
          Payer <Link to={`/device/${c.payer}`}>{String(c.payer).slice(0, 14)}…</Link> → payee{" "}
          <Link to={`/device/${c.payee}`}>{String(c.payee).slice(0, 14)}…</Link>
        </div>
        <div>Deposit {eth(c.deposit)}</div>
        <div>Paid {eth(c.paid)}</div>
        <div>Refund {eth(c.refund)}</div>
        <div data-testid="channel-state">{state}</div>
      </div>
      <Table
        caption="Over time"
        head={["Block", "Time", "Event", "Amount", "Account", "Voucher"]}
        rows={v.events.map((e) => {
          const i = paying.indexOf(e);
          return [
            String(e.blockNumber),
            time(e.timestamp),
            String(e.kind),
            eth(e.amount),
            e.account ? <code>{String(e.account)}</code> : "—",
            i < 0 ? "—" : <Badge check={checks.data?.[i]} />,
          ];
        })}
      />
    </>
  );
}
