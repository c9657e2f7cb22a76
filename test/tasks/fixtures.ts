/**
 * What the task tests provision on the tests' chain: a suite, devices claimed for an owner.
 */
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import { ethers, time } from "../helpers/hardhat.js";
import type { SuiteAddresses } from "../../src/deploy/suite.js";
import { digest } from "../../src/eip712/index.js";
import type { DeviceKey } from "../../src/crypto/deviceKey.js";
import { DeviceBatch } from "../../src/registry/batch.js";
import { deviceByKey } from "../../src/registry/lookup.js";
import { FIRMWARE, MODEL } from "../helpers/registry.js";

/**
 * Commits a batch of `keys` as `manufacturer` (default: account #0) and claims each for `owner`
 * (the manufacturer sends the claims: anyone may); their device ids.
 */
export async function provisionFor(
  suite: SuiteAddresses,
  keys: DeviceKey[],
  owner: { address: string },
  manufacturer?: HardhatEthersSigner,
): Promise<bigint[]> {
  const registry = await ethers.getContractAt("DeviceRegistry", suite.registry);
  const maker = manufacturer ?? (await ethers.getSigners())[0]; // the batch id is the committer's
  const batch = new DeviceBatch(
    keys.map((k) => ({ deviceKey: k.signer, model: MODEL, firmwareHash: FIRMWARE })),
    maker.address,
  );
  await (await registry.connect(maker).commitBatch(batch.root)).wait();
  const { chainId } = await ethers.provider.getNetwork();
  const ids: bigint[] = [];
  for (const key of keys) {
    const claim = { owner: owner.address, batch: batch.id, deadline: BigInt((await time.latest()) + 3600) };
    const signature = key.signDigest(digest("DeviceClaim", { chainId, verifyingContract: suite.registry }, claim));
    await registry.connect(maker).claim(
      {
        owner: owner.address,
        batchId: batch.id,
        deviceKey: key.signer,
        model: MODEL,
        firmwareHash: FIRMWARE,
        deadline: claim.deadline,
      },
      batch.proof(key.signer),
      signature,
    );
    ids.push((await deviceByKey(registry, key.signer)).id);
  }
  return ids;
}
