/** Shared pieces: links, the verification badge, and the loading / empty / lagging / error states. */
import type { ReactNode } from "react";
import { useQuery } from "@tanstack/react-query";
import type { Freshness } from "./api.js";
import { WatchError } from "./api.js";
import type { Check } from "./verify.js";

export function Link({ to, children }: { to: string; children: ReactNode }) {
  return <a href={`#${to}${location.search ? "" : ""}`}>{children}</a>;
}

const LABEL: Record<Check["state"], string> = {
  verified: "verified",
  mismatch: "index ≠ chain",
  invalid: "signature invalid",
  unchecked: "not checked",
};

/** What was re-checked against which block: the badge every signed item carries. */
export function Badge({ check }: { check: Check | undefined }) {
  if (!check)
    return (
      <span className="badge pending" role="status">
        checking…
      </span>
    );
  const title = `${check.what}${check.block !== undefined ? ` — block ${check.block}` : ""}${
    check.mismatches.length ? ` — the index differs from the chain in: ${check.mismatches.join(", ")}` : ""
  }`;
  return (
    <span className={`badge ${check.state}`} data-check={check.state} title={title}>
      {LABEL[check.state]}
      {check.block !== undefined ? ` @${check.block}` : ""}
      {check.mismatches.length ? `: ${check.mismatches.join(", ")}` : ""}
      <span className="sr">. {title}</span>
    </span>
  );
}

/** A query's loading, error and not-found states; the content once there is data. */
export function Loaded<T>({
  q,
  children,
  what,
}: {
  q: ReturnType<typeof useQuery<T>>;
  what: string;
  children: (d: T) => ReactNode;
}) {
  if (q.isPending)
    return (
      <p className="state loading" role="status">
        Loading {what} from the watch…
      </p>
    );
  if (q.isError) {
    const e = q.error as Error;
    const notFound = e instanceof WatchError && e.status === 404;
    return (
      <div className={`state ${notFound ? "empty" : "error"}`} role="alert">
        <p>{notFound ? `Not found: ${e.message}.` : `Error: ${e.message}`}</p>
        {!notFound && <button onClick={() => q.refetch()}>Retry</button>}
      </div>
    );
  }
  return <>{children(q.data as T)}</>;
}

/** How fresh the watch's answer is; a warning when the indexer lags the chain head. */
export function FreshnessNote({ f }: { f: Freshness }) {
  if (f.lagBlocks > 0)
    return (
      <p className="state lagging" role="status">
        The indexer is {f.lagBlocks} block{f.lagBlocks === 1 ? "" : "s"} behind the chain (indexed {f.indexedBlock},
        head {f.headBlock}): recent events may be missing.
      </p>
    );
  return <p className="fresh">Indexed to block {f.indexedBlock} (the chain head).</p>;
}

export const time = (s: unknown) =>
  s === null || s === undefined ? "—" : new Date(Number(s) * 1000).toISOString().replace(".000Z", "Z");

export function Table({ caption, head, rows }: { caption: string; head: string[]; rows: ReactNode[][] }) {
  if (!rows.length) return <p className="state empty">No {caption.toLowerCase()}.</p>;
  return (
    <table>
      <caption>{caption}</caption>
      <thead>
        <tr>
          {head.map((h) => (
            <th key={h} scope="col">
              {h}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={i}>
            {r.map((c, j) => (
              <td key={j}>{c}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
