/** The gas bench's shared pieces: a recorder that reads gas from receipts, and the budgets. */
import type { ContractTransactionResponse } from "ethers";

export class GasRecorder {
  readonly results: Record<string, number> = {};

  /** Waits for `tx` and records its receipt's gasUsed under `name` (21k base included). */
  async record(name: string, tx: Promise<ContractTransactionResponse> | ContractTransactionResponse): Promise<number> {
    if (name in this.results) throw new Error(`bench: operation ${name} recorded twice`);
    const receipt = await (await tx).wait();
    if (!receipt || receipt.status !== 1) throw new Error(`bench: ${name} failed`);
    this.results[name] = Number(receipt.gasUsed);
    return this.results[name];
  }
}
