/**
 * `key rotate`: signs `KeyRotation(device, newKey, nonce, deadline)` with the new key and, when it
 * is still available, the current one, and writes the rotation file the owner's
 * `registry:rotate` sends (`DeviceRegistry.rotateKey(device, Rotation)`). Nothing is sent here.
 *
 * The rotation uses the device nonce: it is refused if the device's queued messages land first,
 * so a device with undelivered registry messages is refused here (deliver them, or give --nonce).
 */
import path from "node:path";
import { DeviceSignatureVerifier } from "../../crypto/verify.js";
import type { DeviceSigner } from "../../crypto/deviceKey.js";
import { bytesToHex, hexToBytes } from "../../eip712/fast.js";
import { rotationDigest, serializeRotation } from "../../registry/rotation.js";
import { contractOf } from "../../messages/calls.js";
import { IDeviceRegistry__factory } from "../../../typechain-types/factories/contracts/interfaces/IDeviceRegistry__factory.js";
import { Chain } from "../client.js";
import { deviceKeyOf, loadKeyMaterial, writeFileAtomic } from "../keystore.js";
import { Outbox } from "../outbox.js";
import { STATUS, preflight } from "../preflight.js";
import {
  CliError,
  chainIdOf,
  parseDeadline,
  parseInteger,
  passphrase,
  readText,
  requireRegistry,
  type Ctx,
} from "./common.js";
import { checkWritable, type RotateFlags } from "./key.js";

export async function rotate(ctx: Ctx, o: RotateFlags) {
  const cfg = ctx.config();
  const env = ctx.io.env;
  checkWritable(o.out, "--out", o.force);
  const registry = requireRegistry(cfg);

  let old: DeviceSigner | undefined;
  if (!o.oldUnavailable) {
    if (cfg.keystore.length !== 1)
      throw new CliError("--keystore <the current key> is required (once); or --old-unavailable if it is lost");
    old = deviceKeyOf(await loadKeyMaterial(cfg.keystore[0], passphrase(cfg, env)));
  } else if (cfg.keystore.length > 0) {
    throw new CliError("--old-unavailable: give no --keystore (the current key is lost)");
  }
  const newPass = o.newPasswordFile
    ? readText(o.newPasswordFile, "--new-password-file").replace(/\r?\n$/, "")
    : env.CUSTOS_NEW_PASSWORD || passphrase(cfg, env);
  const fresh = deviceKeyOf(await loadKeyMaterial(o.newKeystore, newPass));
  if (old && fresh.signer === old.signer)
    throw new CliError("--new-keystore holds the current key: create a new one with `key create`");

  let device = o.device === undefined ? undefined : parseInteger(o.device, "--device", { min: 1n });
  let nonce = o.nonce === undefined ? undefined : parseInteger(o.nonce, "--nonce", { min: 0n, max: 2n ** 32n - 1n });
  let chainId: bigint;
  let chainNow = BigInt(Math.floor(Date.now() / 1000));
  if (cfg.rpc) {
    const checked = await preflight({
      rpc: cfg.rpc,
      chainId: cfg.chainId,
      contracts: { registry },
      signers: old ? [{ signer: old.signer, file: cfg.keystore[0] }] : [],
      logger: ctx.logger(),
    });
    chainId = checked.chainId;
    const provider = Chain.provider(cfg.rpc, chainId);
    try {
      const reg = IDeviceRegistry__factory.connect(registry, provider);
      if (old) {
        const id = checked.devices.get(old.signer)!.deviceId;
        if (device !== undefined && device !== id)
          throw new CliError(`--device ${device}: the current key (--keystore) is device ${id}'s`);
        device = id;
      }
      if (device === undefined) throw new CliError("--device <id> is required when the current key is unavailable");
      const [taken, status] = await reg.resolveKey(fresh.signer).then(
        (r) => [r[0], Number(r[1])] as const,
        () => [0n, 0] as const,
      );
      if (taken !== 0n && STATUS[status] !== "unknown")
        throw new CliError(`--new-keystore ${o.newKeystore}: the key is already device ${taken}'s; a key is used once`);
      if (nonce === undefined) {
        nonce = BigInt(await reg.deviceNonce(device));
        const queued = Outbox.read(path.join(cfg.dataDir, "outbox.jsonl"))
          .live()
          .filter((e) => e.device === device && e.nonce !== undefined && contractOf(e.type) === "registry");
        if (queued.length > 0)
          throw new CliError(
            `--data-dir ${cfg.dataDir}: ${queued.length} undelivered message(s) of device ${device} use its nonces; ` +
              "deliver them first (`custos-agent run`), or give --nonce",
          );
      }
      const block = await provider.getBlock("latest");
      if (block) chainNow = BigInt(block.timestamp);
    } finally {
      provider.destroy();
    }
  } else {
    chainId = await chainIdOf(cfg);
    if (device === undefined) throw new CliError("--device <id> is required without --rpc");
    if (nonce === undefined) throw new CliError("--nonce <n> is required without --rpc (the device's registry nonce)");
  }

  const deadline = o.deadline ? parseDeadline(o.deadline) : chainNow + BigInt(cfg.ttl);
  const digest = hexToBytes(rotationDigest({ chainId, registry, device, newKey: fresh.signer, nonce, deadline }));
  const sign = async (key: DeviceSigner, flag: string) => {
    const signature = await key.sign(digest);
    const verifier = new DeviceSignatureVerifier(key.signer.length === 2 + 2 * 84 ? [key.signer.slice(0, 42)] : []);
    if (!verifier.verify(key.signer, digest, signature))
      throw new CliError(`${flag}: the key produced a signature the registry would refuse`);
    return bytesToHex(signature);
  };
  // The format is src/registry/rotation.ts's (what registry:rotate parses).
  const text = serializeRotation({
    chainId,
    registry,
    device,
    nonce,
    deadline,
    newKey: fresh.signer,
    newKeySignature: await sign(fresh, "--new-keystore"),
    ...(old ? { oldKey: old.signer, oldKeySignature: await sign(old, "--keystore") } : {}),
  });
  writeFileAtomic(o.out, text, 0o644);
  return {
    file: o.out,
    device: device.toString(),
    newKey: fresh.signer,
    oldKey: old ? old.signer : null,
    signedBy: old ? "the new key and the current key" : "the new key alone (the owner installs it)",
    nonce: nonce.toString(),
    deadline: deadline.toString(),
    next: `the owner sends it: npx hardhat registry:rotate --rotation ${o.out} --network <its network>`,
  };
}
