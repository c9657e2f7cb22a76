/** `custos-agent guest …`: a lock guest shows a key certificate and answers a lock's challenge. */
import type { Command } from "commander";
import {
  CliError,
  EXIT,
  loadSigners,
  parseBytes32,
  parseInteger,
  pickSigner,
  print,
  readJson,
  type Ctx,
} from "./common.js";

export const GUEST_EXAMPLES: Record<string, string> = {
  "guest show": "custos-agent guest show --cert key.json",
  "guest sign-unlock":
    "custos-agent guest sign-unlock --cert key.json --challenge 0x5b3c…e1 --keystore phone.json (prints the UnlockRequest)",
  "guest unlock": "custos-agent guest unlock --cert key.json --lock http://192.168.1.20:8700 --keystore phone.json",
};

export function registerGuest(program: Command, ctx: Ctx): void {
  const { io, exit } = ctx;
  const guest = program.command("guest").description("a lock guest: show a key certificate, answer a lock's challenge");
  const readCertificate = async (file: string) => {
    const { parseCertificate } = await import("../roles/guest.js");
    try {
      return parseCertificate(readJson(file, "--cert"));
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`--cert ${file}: ${(err as Error).message}`);
    }
  };
  ctx.example(
    guest
      .command("show")
      .description(
        "what a key certificate allows, in words, whether its issuer's signature checks out, and (with --rpc) whether the chain backs it",
      )
      .requiredOption("--cert <file>", "the certificate file the owner gave")
      .addHelpText(
        "after",
        "\nWithout --rpc only the certificate itself is read: who it names as owner is not checked (checkedOnChain: false).\n" +
          "With --rpc: the lock exists and is active, the issuer is its owner or a manager, the key is not revoked;\n" +
          "exit status 4 when the lock will refuse the key (the reasons are printed).\n",
      )
      .action(async (o: { cert: string }) => {
        const { showCertificate, checkCertificateOnChain } = await import("../roles/guest.js");
        const { TypedDataHasher } = await import("../../eip712/fast.js");
        const cert = await readCertificate(o.cert);
        const shown = showCertificate(cert, await TypedDataHasher.create());
        const cfg = ctx.config();
        if (!cfg.rpc) {
          print(io, {
            ...shown,
            checkedOnChain: false,
            note: "the owner and issuer are as the certificate states them; give --rpc to check them on chain",
          });
          return;
        }
        const { readChainId, checkContractAt } = await import("../preflight.js");
        const chainId = await readChainId(cfg.rpc);
        if (BigInt(cert.chainId) !== chainId)
          throw new CliError(
            `--cert ${o.cert}: it is for chain ${cert.chainId}; the node at --rpc serves chain ${chainId}`,
          );
        // The certificate names its LockAccess: check there is one there (a wrong file fails here, named).
        await checkContractAt(cfg.rpc, "lockAccess", cert.verifyingContract, `--cert ${o.cert}: verifyingContract`);
        const { Chain } = await import("../client.js");
        const provider = Chain.provider(cfg.rpc, chainId);
        try {
          const chain = await checkCertificateOnChain(cert, provider);
          print(io, { ...shown, ...chain, usableNow: shown.usableNow && chain.problems.length === 0 });
          if (chain.problems.length > 0) {
            io.stderr.write(`custos-agent: the lock will refuse this key: ${chain.problems.join("; ")}\n`);
            exit.code = EXIT.refused;
          }
        } finally {
          provider.destroy();
        }
      }),
    "guest show",
    GUEST_EXAMPLES["guest show"],
  );
  ctx.example(
    guest
      .command("sign-unlock")
      .description("sign the UnlockRequest that answers a lock's challenge (nothing is sent)")
      .requiredOption("--cert <file>", "the certificate file")
      .requiredOption("--challenge <bytes32>", "the challenge the lock showed")
      .option("--ttl <seconds>", "how long the answer is valid (default 60)")
      .action(async (o: { cert: string; challenge: string; ttl?: string }) => {
        const cert = await readCertificate(o.cert);
        const challenge = parseBytes32(o.challenge, "--challenge");
        const ttlS = o.ttl === undefined ? 60 : Number(parseInteger(o.ttl, "--ttl", { min: 1n, max: 86_400n }));
        const signer = await pickSigner(await loadSigners(ctx.config(), io.env), undefined, "--keystore");
        const { signUnlockRequest } = await import("../roles/guest.js");
        const { TypedDataHasher } = await import("../../eip712/fast.js");
        try {
          const request = await signUnlockRequest(signer, cert, challenge, await TypedDataHasher.create(), { ttlS });
          print(io, { certificate: { key: cert.key, signature: cert.signature }, request });
        } catch (err) {
          throw new CliError((err as Error).message);
        }
      }),
    "guest sign-unlock",
    GUEST_EXAMPLES["guest sign-unlock"],
  );
  ctx.example(
    guest
      .command("unlock")
      .description("ask a lock to open: fetch its challenge, answer it, print its decision (exit 1 if denied)")
      .requiredOption("--cert <file>", "the certificate file")
      .option("--lock <url>", "the lock's URL (default: the certificate's lockUrl)")
      .action(async (o: { cert: string; lock?: string }) => {
        const cert = await readCertificate(o.cert);
        const url = o.lock ?? cert.lockUrl;
        if (!url) throw new CliError("--lock is required (the certificate names no lockUrl)");
        const signer = await pickSigner(await loadSigners(ctx.config(), io.env), undefined, "--keystore");
        const { unlockAt } = await import("../roles/guest.js");
        const { TypedDataHasher } = await import("../../eip712/fast.js");
        let decision: Awaited<ReturnType<typeof unlockAt>>;
        try {
          decision = await unlockAt(url, cert, signer, await TypedDataHasher.create());
        } catch (err) {
          throw new CliError((err as Error).message);
        }
        print(io, decision);
        exit.code = decision.open ? 0 : 1;
      }),
    "guest unlock",
    GUEST_EXAMPLES["guest unlock"],
  );
}
