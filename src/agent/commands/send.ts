/**
 * `custos-agent sign claim`, `attest-firmware`, `send`: sign device messages, persist them, and
 * deliver them (one-shot: see deliver.ts for how they end and their exit statuses).
 */
import type { Command } from "commander";
import type { DeviceMessageType } from "../../messages/index.js";
import {
  CONTRACT_FLAGS,
  CliError,
  chainIdOf,
  deliveryOptions,
  loadSigners,
  parseAddress,
  parseBytes32,
  parseDeadline,
  parseInteger,
  pickAgent,
  pickSigner,
  print,
  readJson,
  readText,
  requireRegistry,
  withAgents,
  withStack,
  type Ctx,
  type StackChecks,
} from "./common.js";
import type { DeliveryOptions } from "./deliver.js";

/** The catalogue's device message types (kept here so that `--help` does not load the catalogue). */
const ALL_TYPES = [
  "DeviceClaim",
  "FirmwareAttestation",
  "LocationBeacon",
  "NonceCancellation",
  "UnlockLog",
  "Voucher",
  "Checkpoint",
] as const;

/**
 * What `send TYPE` signs: a claim is signed by `sign claim`; a voucher is streamed by `meter pay`; a
 * location beacon is sealed to its recipients by `beacon`.
 */
export const SENDABLE = ALL_TYPES.filter((t) => t !== "DeviceClaim" && t !== "Voucher" && t !== "LocationBeacon");

const CONTRACT_OF_TYPE: Record<string, keyof typeof CONTRACT_FLAGS> = {
  DeviceClaim: "registry",
  FirmwareAttestation: "registry",
  LocationBeacon: "locationBeacons",
  NonceCancellation: "registry",
  UnlockLog: "lockAccess",
  Voucher: "paymentChannels",
  Checkpoint: "custodyLedger",
};

export const SEND_EXAMPLES: Record<string, string> = {
  "sign claim":
    "custos-agent sign claim --owner 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --batch 184467440737 --deadline +1h --leaf leaf.json",
  "attest-firmware":
    "custos-agent attest-firmware --firmware-hash 0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  send: "custos-agent send FirmwareAttestation --field firmwareHash=0x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
};

function typeRefusal(type: string): CliError {
  if (type === "LocationBeacon")
    return new CliError(
      "send LocationBeacon: a beacon's location is sealed to its owner's keys; use `custos-agent beacon --latitude-e7 N --longitude-e7 N`",
    );
  if (type === "Voucher")
    return new CliError(
      "send Voucher: a voucher is streamed by the payer with `custos-agent meter pay` and presented by the payee's `meter serve`",
    );
  return new CliError(
    `type must be one of ${SENDABLE.join(", ")} ` +
      `(a claim is signed with \`sign claim\` and sent with --signed; a voucher goes by \`meter pay\`), not ${type}`,
  );
}

/** The contract flags the messages' types need. */
function needs(types: string[]): StackChecks["need"] {
  return [...new Set(types.map((t) => CONTRACT_OF_TYPE[t]).filter((c) => c && c !== "registry"))];
}

export function registerSend(program: Command, ctx: Ctx): void {
  const { io, exit } = ctx;
  const sign = program.command("sign").description("sign a message and print it (nothing is sent)");
  ctx.example(
    sign
      .command("claim")
      .description("sign a DeviceClaim: proof that this hardware key is present, for the owner's claim")
      .requiredOption("--owner <address>", "the owner the device is claimed for")
      .requiredOption("--batch <id>", "the batch id (the Merkle root's first 48 bits)")
      .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
      .option("--leaf <file>", "JSON {model, firmwareHash, proof} of the device's batch leaf")
      .option("--model <bytes32>", "the leaf's model")
      .option("--firmware-hash <bytes32>", "the leaf's firmware hash")
      .option("--proof <hashes>", "the leaf's Merkle proof, comma-separated")
      .option("--device <selector>", "which loaded key (signer, device id or index) when several")
      .action(
        async (o: {
          owner: string;
          batch: string;
          deadline?: string;
          leaf?: string;
          model?: string;
          firmwareHash?: string;
          proof?: string;
          device?: string;
        }) => {
          const cfg = ctx.config();
          const owner = parseAddress(o.owner, "--owner");
          const batch = parseInteger(o.batch, "--batch", { min: 1n, max: (1n << 48n) - 1n });
          const deadline = o.deadline ? parseDeadline(o.deadline) : BigInt(Math.floor(Date.now() / 1000) + cfg.ttl);
          const claim = claimLeaf(o);
          const registry = requireRegistry(cfg);
          const chainId = await chainIdOf(cfg);
          const signer = await pickSigner(await loadSigners(cfg, io.env), o.device);
          const { TypedDataHasher } = await import("../../eip712/fast.js");
          const hasher = await TypedDataHasher.create();
          const message = { owner, batch: batch.toString(), deadline: deadline.toString() };
          const digest = hasher.digest("DeviceClaim", { chainId, verifyingContract: registry }, message);
          const signature = await signer.sign(digest);
          print(io, {
            type: "DeviceClaim",
            key: signer.signer,
            message,
            signature: "0x" + Buffer.from(signature).toString("hex"),
            ...(claim ? { claim } : {}),
          });
        },
      ),
    "sign claim",
    SEND_EXAMPLES["sign claim"],
  );

  ctx.example(
    deliveryOptions(
      program
        .command("attest-firmware")
        .description("sign a FirmwareAttestation, persist it, and deliver it")
        .requiredOption("--firmware-hash <bytes32>", "hash of the firmware image the device runs")
        .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
        .option("--ref <key>", "idempotency key: a message with this key already queued is not signed again")
        .option("--device <selector>", "which loaded key when several"),
    ).action(
      async (o: DeliveryOptions & { firmwareHash: string; deadline?: string; ref?: string; device?: string }) => {
        const firmwareHash = parseBytes32(o.firmwareHash, "--firmware-hash");
        const deadline = o.deadline ? parseDeadline(o.deadline) : undefined;
        await withAgents(ctx, async (agents, stack) => {
          const agent = await pickAgent(agents, o.device);
          const s = await agent.sign(
            "FirmwareAttestation",
            { firmwareHash, ...(deadline === undefined ? {} : { deadline }) },
            o.ref === undefined ? {} : { ref: o.ref },
          );
          const { deliverAndReport } = await import("./deliver.js");
          exit.code = await deliverAndReport(ctx, stack, [s.id], o);
        });
      },
    ),
    "attest-firmware",
    SEND_EXAMPLES["attest-firmware"],
  );

  ctx.example(
    deliveryOptions(
      program
        .command("send")
        .description("sign device messages, persist them, and deliver them (or --signed / --batch FILE)")
        .addHelpText(
          "after",
          "\nTypes: " +
            SENDABLE.join(", ") +
            " (device, nonce and a default deadline are filled in).\n" +
            "A claim is signed with `sign claim` and sent with --signed; vouchers go by `meter pay` / `meter serve`;\n" +
            "checkpoints are what `tracker run` posts.\n" +
            "--signed FILE sends a message signed elsewhere, e.g. a claim from `sign claim`.\n" +
            "--batch FILE holds JSON lines {ref?, device?, type, fields}; refs already queued are skipped,\n" +
            "so running the same batch again after a crash signs and sends nothing twice.\n" +
            "More examples:\n  custos-agent send NonceCancellation\n  custos-agent send --batch messages.jsonl\n",
        )
        .argument("[type]", "message type")
        .option("--field <name=value>", "a field of the message (repeat)", (v: string, prev: string[] = []) => [
          ...prev,
          v,
        ])
        .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
        .option("--ref <key>", "idempotency key")
        .option("--device <selector>", "which loaded key when several")
        .option("--signed <file>", "a message signed elsewhere (JSON), e.g. a claim from `sign claim`")
        .option("--batch <file>", "JSON lines of messages to sign ('-' for stdin)"),
    ).action(
      async (
        type: string | undefined,
        o: DeliveryOptions & {
          field?: string[];
          deadline?: string;
          ref?: string;
          device?: string;
          signed?: string;
          batch?: string;
        },
      ) => {
        const modes = [type !== undefined, o.signed !== undefined, o.batch !== undefined].filter(Boolean).length;
        if (modes !== 1) throw new CliError("send needs exactly one of: a message type, --signed FILE, --batch FILE");
        const { deliverAndReport } = await import("./deliver.js");
        if (o.signed !== undefined) {
          const { checkShape } = await import("../../messages/index.js");
          let message;
          try {
            message = checkShape(readJson(o.signed, "--signed"));
          } catch (err) {
            if (err instanceof CliError) throw err;
            throw new CliError(`--signed ${o.signed}: ${(err as Error).message}`);
          }
          await withStack(
            ctx,
            async (stack) => {
              const entry = await stack.outbox.add(message, o.ref === undefined ? {} : { ref: o.ref });
              exit.code = await deliverAndReport(ctx, stack, [entry.id], o);
            },
            { need: needs([message.type]) },
          );
          return;
        }
        if (o.batch !== undefined) {
          const lines = parseBatch(readText(o.batch, "--batch"), o.batch);
          const { AgentError } = await import("../agent.js");
          await withAgents(
            ctx,
            async (agents, stack) => {
              // Signed in line order (each device's nonces follow it), persisted with shared syncs.
              const picked = await Promise.all(
                lines.map((line) => pickAgent(agents, line.device ?? o.device, `${line.where}: device`)),
              );
              const signed = await Promise.all(
                lines.map((line, i) =>
                  picked[i]
                    .sign(line.type, line.fields, line.ref === undefined ? {} : { ref: line.ref })
                    .catch((err: Error) => {
                      throw err instanceof AgentError ? new CliError(`${line.where}: ${err.message}`) : err;
                    }),
                ),
              );
              exit.code = await deliverAndReport(
                ctx,
                stack,
                signed.map((s) => s.id),
                o,
              );
            },
            { need: needs(lines.map((l) => l.type)) },
          );
          return;
        }
        if (!(SENDABLE as readonly string[]).includes(type!)) throw typeRefusal(type!);
        const t = type as DeviceMessageType;
        const fields: Record<string, unknown> = await parseFields(t, o.field ?? []);
        if (o.deadline) fields.deadline = parseDeadline(o.deadline);
        await withAgents(
          ctx,
          async (agents, stack) => {
            const agent = await pickAgent(agents, o.device);
            const s = await agent.sign(t, fields, o.ref === undefined ? {} : { ref: o.ref });
            exit.code = await deliverAndReport(ctx, stack, [s.id], o);
          },
          { need: needs([t]) },
        );
      },
    ),
    "send",
    SEND_EXAMPLES.send,
  );
}

/** `--field name=value` pairs, checked against the type's fields in the catalogue. */
async function parseFields(type: DeviceMessageType, pairs: string[]): Promise<Record<string, string>> {
  const { TYPES } = await import("../../eip712/index.js");
  const fields: Record<string, string> = {};
  const known: string[] = TYPES[type].fields.map((f) => f.name);
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(`--field must be name=value, not ${pair}`);
    const name = pair.slice(0, eq);
    if (!known.includes(name))
      throw new CliError(`--field ${name}: ${type} has no such field (fields: ${known.join(", ")})`);
    fields[name] = pair.slice(eq + 1);
  }
  return fields;
}

function claimLeaf(o: { leaf?: string; model?: string; firmwareHash?: string; proof?: string }) {
  if (o.leaf) {
    const leaf = readJson(o.leaf, "--leaf") as { model?: unknown; firmwareHash?: unknown; proof?: unknown };
    if (!leaf || typeof leaf !== "object") throw new CliError(`--leaf ${o.leaf}: must be a JSON object`);
    const proof = leaf.proof;
    if (!Array.isArray(proof)) throw new CliError(`--leaf ${o.leaf}: proof must be an array of 32-byte hashes`);
    return {
      model: parseBytes32(String(leaf.model), `--leaf ${o.leaf}: model`),
      firmwareHash: parseBytes32(String(leaf.firmwareHash), `--leaf ${o.leaf}: firmwareHash`),
      proof: proof.map((h, i) => parseBytes32(String(h), `--leaf ${o.leaf}: proof[${i}]`)),
    };
  }
  if (o.model === undefined && o.firmwareHash === undefined && o.proof === undefined) return undefined;
  if (o.model === undefined || o.firmwareHash === undefined) {
    throw new CliError("--model and --firmware-hash go together (with --proof)");
  }
  return {
    model: parseBytes32(o.model, "--model"),
    firmwareHash: parseBytes32(o.firmwareHash, "--firmware-hash"),
    proof: (o.proof ?? "")
      .split(",")
      .filter((h) => h.length > 0)
      .map((h, i) => parseBytes32(h.trim(), `--proof[${i}]`)),
  };
}

interface BatchLine {
  where: string;
  ref?: string;
  device?: string;
  type: DeviceMessageType;
  fields: Record<string, unknown>;
}

function parseBatch(text: string, file: string): BatchLine[] {
  const out: BatchLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line.length === 0) return;
    const where = `--batch ${file}:${i + 1}`;
    let v: { ref?: unknown; device?: unknown; type?: unknown; fields?: unknown };
    try {
      v = JSON.parse(line);
    } catch {
      throw new CliError(`${where}: not valid JSON`);
    }
    if (typeof v.type !== "string" || !(SENDABLE as readonly string[]).includes(v.type)) {
      throw new CliError(`${where}: ${typeRefusal(String(v.type)).message}`);
    }
    if (v.fields !== undefined && (typeof v.fields !== "object" || v.fields === null)) {
      throw new CliError(`${where}: fields must be an object`);
    }
    if (v.ref !== undefined && typeof v.ref !== "string") throw new CliError(`${where}: ref must be a string`);
    if (v.device !== undefined && typeof v.device !== "string") throw new CliError(`${where}: device must be a string`);
    out.push({
      where,
      type: v.type as DeviceMessageType,
      fields: (v.fields ?? {}) as Record<string, unknown>,
      ...(v.ref === undefined ? {} : { ref: v.ref as string }),
      ...(v.device === undefined ? {} : { device: v.device as string }),
    });
  });
  return out;
}
