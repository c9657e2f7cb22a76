/**
 * Where a transaction's gas goes, by opcode, from the Hardhat node's struct logs
 * (`debug_traceTransaction`). Used by `GasRecorder` when `BENCH_PROFILE` names the operations
 * to profile (a comma-separated list, or `*`), to see which reads, calls and hashes a budget pays for.
 */
import type { EthereumProvider } from "hardhat/types";

interface StructLog {
  op: string;
  gas: number;
  gasCost: number;
  depth: number;
}

/** Gas by opcode (calls: their own cost, without what the callee spent), and the intrinsic part. */
export async function profileTransaction(
  provider: EthereumProvider,
  hash: string,
  gasUsed: number,
): Promise<{
  intrinsic: number;
  byOp: Map<string, { count: number; gas: number }>;
  byDepth: Map<number, number>;
}> {
  const trace = (await provider.send("debug_traceTransaction", [
    hash,
    { disableStorage: true, disableMemory: true, disableStack: true },
  ])) as { structLogs: StructLog[] };
  const logs = trace.structLogs;
  const byOp = new Map<string, { count: number; gas: number }>();
  const add = (op: string, gas: number) => {
    const e = byOp.get(op) ?? { count: 0, gas: 0 };
    e.count += 1;
    e.gas += gas;
    byOp.set(op, e);
  };
  for (let i = 0; i < logs.length; i++) {
    const step = logs[i];
    const next = logs[i + 1];
    if (next === undefined) {
      add(step.op, step.gasCost);
    } else if (next.depth === step.depth) {
      add(step.op, step.gas - next.gas);
    } else if (next.depth > step.depth) {
      // A call: its cost is what the caller lost, less what the callee spent.
      let j = i + 1;
      while (j < logs.length && logs[j].depth > step.depth) j++;
      const lastInCallee = logs[j - 1];
      const calleeSpent = next.gas - lastInCallee.gas + lastInCallee.gasCost;
      const after = logs[j];
      add(`${step.op}`, after === undefined ? step.gasCost : step.gas - after.gas - calleeSpent);
    } else {
      add(step.op, step.gasCost);
    }
  }
  // Gas spent at each call depth (1: the called contract, 2: what it calls, ...), callees excluded.
  const byDepth = new Map<number, number>();
  for (let i = 0; i < logs.length; i++) {
    const next = logs[i + 1];
    if (next !== undefined && next.depth === logs[i].depth)
      byDepth.set(logs[i].depth, (byDepth.get(logs[i].depth) ?? 0) + logs[i].gas - next.gas);
  }
  const executed = logs.length === 0 ? 0 : logs[0].gas - logs[logs.length - 1].gas + logs[logs.length - 1].gasCost;
  return { intrinsic: gasUsed - executed, byOp, byDepth };
}

/** A short table: the intrinsic gas, then the costliest opcodes. */
export function formatProfile(
  name: string,
  gasUsed: number,
  p: Awaited<ReturnType<typeof profileTransaction>>,
): string {
  const rows = [...p.byOp.entries()].sort((a, b) => b[1].gas - a[1].gas).slice(0, 14);
  const depths = [...p.byDepth.entries()].map(([d, g]) => `depth ${d}: ${g}`).join(", ");
  const lines = [
    `${name}: ${gasUsed} gas, ${p.intrinsic} intrinsic (base + calldata, or the calldata floor); ${depths}`,
  ];
  for (const [op, { count, gas }] of rows)
    lines.push(`  ${op.padEnd(14)} ×${String(count).padStart(4)} ${String(gas).padStart(7)}`);
  return lines.join("\n");
}
