/** Pieces shared by the model-based (stateful) tests. */
import { expect } from "chai";
import { time } from "./hardhat.js";
import type { BaseContract } from "ethers";
import type { AsyncCommand } from "fast-check";

/**
 * A step of a model-based test: `run` applies it to the model and the chain, then checks every
 * invariant of the model against the chain, labelled with the step.
 */
export abstract class CheckedStep<M extends object, W> implements AsyncCommand<M, W> {
  check(_m: Readonly<M>): boolean {
    return true;
  }
  abstract apply(m: M, w: W): Promise<void>;
  /** What must hold after every step. */
  protected abstract checkInvariants(m: M, w: W, label: string): Promise<void>;
  async run(m: M, w: W): Promise<void> {
    await this.apply(m, w);
    await this.checkInvariants(m, w, this.toString());
  }
  abstract toString(): string;
}

/** Mines the next transaction one second later (the model knows every block's time). */
export async function tick(m: { now: bigint }): Promise<void> {
  m.now += 1n;
  await time.setNextBlockTimestamp(m.now);
}

/**
 * Sends a transaction the model judged: `outcome` null means it must succeed, otherwise it must
 * revert with that custom error of `contract`. Counts refusals in `tally.refused`.
 */
export async function expectOutcome(
  contract: BaseContract,
  tally: { refused: number },
  label: string,
  send: () => Promise<unknown>,
  outcome: string | null,
): Promise<void> {
  if (outcome === null) {
    try {
      await ((await send()) as { wait(): Promise<unknown> }).wait();
    } catch (e) {
      throw new Error(`${label}: the model expects success, the chain refused: ${(e as Error).message}`);
    }
  } else {
    tally.refused++;
    // The matchers leave out a message given to `expect`: the label goes into the error here.
    try {
      await expect(send()).to.be.revertedWithCustomError(contract, outcome);
    } catch (e) {
      throw new Error(`${label}: the model expects ${outcome}: ${(e as Error).message}`);
    }
  }
}
