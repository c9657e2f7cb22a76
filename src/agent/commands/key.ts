/**
 * `custos-agent key …`: create (one, or a fleet with --count), import, show (public data only: no
 * passphrase), rotate (sign a key rotation for `registry:rotate`).
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import path from "node:path";
import { Option, type Command } from "commander";
import type { DeviceKeyKind } from "../../crypto/deviceKey.js";
import type { KeyInfo } from "../keystore.js";
import {
  CliError,
  parseBytes32,
  parseInteger,
  passphrase,
  print,
  readText,
  requireKeystores,
  type Ctx,
} from "./common.js";

export const KEY_EXAMPLES: Record<string, string> = {
  "key create": "custos-agent key create --kind secp256k1 --out device.json",
  "key show": "custos-agent key show --keystore device.json",
  "key import": "custos-agent key import --in device-key.pem --out device.json",
  "key rotate":
    "custos-agent key rotate --keystore device.json --new-keystore device-2.json --out rotation.json --rpc http://127.0.0.1:8545 --registry 0x5FbD…0aa3",
};

function scryptOf(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(parseInteger(v, "--scrypt-n", { min: 2n, max: 1n << 30n }));
  if ((n & (n - 1)) !== 0) throw new CliError("--scrypt-n must be a power of two");
  return n;
}

export function registerKey(program: Command, ctx: Ctx): void {
  const key = program.command("key").description("create, import, show and rotate device keys");
  const { io } = ctx;

  ctx.example(
    key
      .command("create")
      .description(
        "create a device key and write it encrypted (Web3 JSON for secp256k1, PKCS#8 for P-256); --count N makes a fleet",
      )
      .addOption(new Option("--kind <kind>", "key kind").choices(["secp256k1", "p256"]).makeOptionMandatory())
      .option("--out <file>", "where to write the key file (one key)")
      .option("--count <n>", "how many keys to create (with --out-dir)")
      .option("--out-dir <dir>", "where to write --count keys: device-0001.json …, keys.jsonl (and devices.csv)")
      .option("--model <bytes32>", "with --count: the model column of devices.csv (for registry:batch)")
      .option("--firmware-hash <bytes32>", "with --count: the firmwareHash column of devices.csv")
      .option("--scrypt-n <n>", "scrypt cost of a secp256k1 key file (a power of two; default 131072)")
      .option("--force", "replace existing files")
      .addHelpText(
        "after",
        "\nWith --count, the secp256k1 files share one scrypt derivation (one salt, one passphrase: breaking one\n" +
          "breaks all, as it would anyway with one passphrase) and each has its own IV; a progress bar goes to stderr.\n" +
          "More examples:\n  custos-agent key create --kind secp256k1 --count 1000 --out-dir fleet/ \\\n" +
          "    --model 0x…01 --firmware-hash 0x…02   # then: npx hardhat registry:batch --csv fleet/devices.csv\n",
      )
      .action(
        async (o: {
          kind: DeviceKeyKind;
          out?: string;
          count?: string;
          outDir?: string;
          model?: string;
          firmwareHash?: string;
          scryptN?: string;
          force?: boolean;
        }) => {
          const cfg = ctx.config();
          if (o.kind === "p256" && !cfg.verifier)
            throw new CliError("--verifier (or CUSTOS_P256_VERIFIER) is required for a p256 key");
          const scryptN = scryptOf(o.scryptN);
          if (o.count !== undefined || o.outDir !== undefined) {
            if (o.out !== undefined) throw new CliError("--out is for one key; with --count give --out-dir");
            if (o.count === undefined) throw new CliError("--out-dir goes with --count <n>");
            if (o.outDir === undefined) throw new CliError("--count goes with --out-dir <dir>");
            const count = Number(parseInteger(o.count, "--count", { min: 1n, max: 1_000_000n }));
            if ((o.model === undefined) !== (o.firmwareHash === undefined))
              throw new CliError("--model and --firmware-hash go together (they fill devices.csv)");
            const model = o.model === undefined ? undefined : parseBytes32(o.model, "--model");
            const firmwareHash =
              o.firmwareHash === undefined ? undefined : parseBytes32(o.firmwareHash, "--firmware-hash");
            const pass = passphrase(cfg, io.env);
            const result = await createFleet(ctx, {
              kind: o.kind,
              count,
              dir: o.outDir,
              pass,
              scryptN,
              verifier: cfg.verifier,
              force: !!o.force,
              csv: model && firmwareHash ? { model, firmwareHash } : undefined,
            });
            print(io, result);
            return;
          }
          if (o.out === undefined) throw new CliError("--out <file> is required (or --count with --out-dir)");
          const { generateKey, saveKeystore } = await import("../keystore.js");
          const material = generateKey(o.kind, { verifier: cfg.verifier });
          const info = await saveKeystore(o.out, material, passphrase(cfg, io.env), {
            scryptN,
            overwrite: o.force,
          });
          print(io, { file: o.out, ...info });
        },
      ),
    "key create",
    KEY_EXAMPLES["key create"],
  );

  ctx.example(
    key
      .command("import")
      .description("import a key: 32-byte hex, PEM (PKCS#8 / SEC1), or a Web3 JSON key file")
      .requiredOption("--in <file>", "the key to import ('-' for stdin)")
      .requiredOption("--out <file>", "where to write the encrypted key file")
      .addOption(
        new Option("--kind <kind>", "expected kind (p256 for a hex P-256 scalar)").choices(["secp256k1", "p256"]),
      )
      .option("--in-password-file <file>", "passphrase of an encrypted input")
      .option("--scrypt-n <n>", "scrypt cost of a secp256k1 key file")
      .option("--force", "replace an existing file")
      .action(
        async (o: {
          in: string;
          out: string;
          kind?: DeviceKeyKind;
          inPasswordFile?: string;
          scryptN?: string;
          force?: boolean;
        }) => {
          const cfg = ctx.config();
          const inPass = o.inPasswordFile
            ? readText(o.inPasswordFile, "--in-password-file").replace(/\r?\n$/, "")
            : undefined;
          const { importKey, saveKeystore } = await import("../keystore.js");
          const material = await importKey(
            readText(o.in, "--in"),
            { kind: o.kind, verifier: cfg.verifier, passphrase: inPass },
            `--in ${o.in}`,
          );
          const info = await saveKeystore(o.out, material, passphrase(cfg, io.env), {
            scryptN: scryptOf(o.scryptN),
            overwrite: o.force,
          });
          print(io, { file: o.out, ...info });
        },
      ),
    "key import",
    KEY_EXAMPLES["key import"],
  );

  ctx.example(
    key
      .command("show")
      .description(
        "show each key's public data: kind, ERC-7913 signer bytes, address, device id (no passphrase needed)",
      )
      .option("--verify", "decrypt each key (needs the passphrase) and check the file's public data against it")
      .action(async (o: { verify?: boolean }) => {
        const cfg = ctx.config();
        const files = requireKeystores(cfg);
        const { publicInfo, keyInfo, loadKeyMaterial } = await import("../keystore.js");
        const infos: (KeyInfo & { file: string; verified?: boolean })[] = [];
        if (o.verify) {
          const pass = passphrase(cfg, io.env);
          for (const file of files) infos.push({ file, ...keyInfo(await loadKeyMaterial(file, pass)), verified: true });
        } else {
          for (const file of files) infos.push({ file, ...publicInfo(file) });
        }
        print(io, infos.length === 1 ? infos[0] : infos);
      }),
    "key show",
    KEY_EXAMPLES["key show"],
  );

  ctx.example(
    key
      .command("rotate")
      .description(
        "sign a key rotation with the new key and, when it is still available, the current one; write the file `registry:rotate` takes",
      )
      .requiredOption("--new-keystore <file>", "the new key (create it first with `key create`)")
      .requiredOption("--out <file>", "where to write the rotation file")
      .option("--old-unavailable", "the current key is lost: sign with the new key alone (the owner installs it)")
      .option("--device <id>", "the device id (default: the one the registry gives the current key)")
      .option("--nonce <n>", "the device nonce to sign (default: the registry's, read over --rpc)")
      .option("--deadline <time>", "unix seconds or +N[s|m|h|d] (default now + --ttl)")
      .option("--new-password-file <file>", "the new key's passphrase (default: the current key's)")
      .option("--force", "replace an existing --out file")
      .addHelpText(
        "after",
        "\nThe current key is --keystore. Then the owner sends it: npx hardhat registry:rotate --rotation rotation.json\n" +
          "After it landed, run the agent with --keystore <the new key> (the device keeps its id).\n",
      )
      .action(async (o: RotateFlags) => {
        const { rotate } = await import("./rotate.js");
        print(io, await rotate(ctx, o));
      }),
    "key rotate",
    KEY_EXAMPLES["key rotate"],
  );
}

export interface RotateFlags {
  newKeystore: string;
  out: string;
  oldUnavailable?: boolean;
  device?: string;
  nonce?: string;
  deadline?: string;
  newPasswordFile?: string;
  force?: boolean;
}

interface FleetOptions {
  kind: DeviceKeyKind;
  count: number;
  dir: string;
  pass: string;
  scryptN?: number;
  verifier?: string;
  force: boolean;
  csv?: { model: string; firmwareHash: string };
}

/**
 * Creates `count` keys in `dir` in one process: one scrypt derivation for every secp256k1 file, and
 * the files written atomically each (temporary name, fsync, rename) with one directory sync at the
 * end. Shows a progress bar on a terminal, a line per 10% otherwise.
 */
async function createFleet(ctx: Ctx, o: FleetOptions) {
  const { SharedScryptEncryptor, encryptKey, generateKey, keyInfo } = await import("../keystore.js");
  const { writeFileSync, openSync, fsyncSync, closeSync } = await import("node:fs");
  mkdirSync(o.dir, { recursive: true });
  const width = String(o.count).length < 4 ? 4 : String(o.count).length;
  const name = (i: number) => `device-${String(i + 1).padStart(width, "0")}.json`;
  if (!o.force) {
    const taken = new Set(readdirSync(o.dir));
    const clash =
      [...Array(o.count).keys()].map(name).find((n) => taken.has(n)) ??
      (taken.has("keys.jsonl") ? "keys.jsonl" : undefined);
    if (clash) {
      throw new CliError(`--out-dir ${o.dir}: ${clash} already exists; refusing to overwrite keys (add --force)`);
    }
  }
  const started = Date.now();
  const progress = new Progress(ctx.io.stderr, o.count, "keys");
  const shared = o.kind === "secp256k1" ? new SharedScryptEncryptor(o.pass, o.scryptN ?? 1 << 17) : undefined;
  const infos: (KeyInfo & { file: string })[] = [];
  for (let i = 0; i < o.count; i++) {
    const material = generateKey(o.kind, { verifier: o.verifier });
    const text =
      shared && material.kind === "secp256k1"
        ? shared.encrypt(material.privateKey)
        : await encryptKey(material, o.pass, { scryptN: o.scryptN });
    const file = path.join(o.dir, name(i));
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    infos.push({ file, ...keyInfo(material) });
    progress.tick(i + 1);
  }
  // The index and the CSV: written whole under a temporary name, then renamed.
  const put = (file: string, text: string) => {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
  };
  const index = path.join(o.dir, "keys.jsonl");
  put(
    index,
    infos
      .map((k) =>
        JSON.stringify({
          file: path.basename(k.file),
          kind: k.kind,
          signer: k.signer,
          deviceId: k.deviceId.toString(),
        }),
      )
      .join("\n") + "\n",
  );
  let csv: string | undefined;
  if (o.csv) {
    csv = path.join(o.dir, "devices.csv");
    put(
      csv,
      "deviceKey,model,firmwareHash\n" +
        infos.map((k) => `${k.signer},${o.csv!.model},${o.csv!.firmwareHash}`).join("\n") +
        "\n",
    );
  }
  const dir = openSync(o.dir, "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  progress.done();
  return {
    dir: o.dir,
    count: infos.length,
    kind: o.kind,
    index,
    ...(csv ? { csv } : {}),
    seconds: Number(((Date.now() - started) / 1000).toFixed(2)),
    first: { file: infos[0].file, signer: infos[0].signer, deviceId: infos[0].deviceId },
  };
}

/** A progress bar on a terminal (redrawn in place), or a line per 10% into a log. */
export class Progress {
  private shownDecile = -1;
  private lastDraw = 0;
  private readonly started = Date.now();

  constructor(
    private readonly out: { write(s: string): unknown; isTTY?: boolean },
    private readonly total: number,
    private readonly unit: string,
  ) {}

  tick(n: number): void {
    const elapsed = ((Date.now() - this.started) / 1000).toFixed(1);
    if (this.out.isTTY) {
      if (n !== this.total && Date.now() - this.lastDraw < 100) return;
      this.lastDraw = Date.now();
      const filled = Math.round((n / this.total) * 30);
      this.out.write(
        `\r[${"#".repeat(filled)}${".".repeat(30 - filled)}] ${n}/${this.total} ${this.unit} ${elapsed} s`,
      );
      return;
    }
    const decile = Math.floor((n / this.total) * 10);
    if (decile > this.shownDecile) {
      this.shownDecile = decile;
      this.out.write(`custos-agent: ${n}/${this.total} ${this.unit} (${decile * 10}%, ${elapsed} s)\n`);
    }
  }

  done(): void {
    if (this.out.isTTY) this.out.write("\n");
  }
}

/** Whether `file` may be written: absent, or `force`. */
export function checkWritable(file: string, flag: string, force?: boolean): void {
  if (!force && existsSync(file)) throw new CliError(`${flag} ${file} already exists (add --force to replace it)`);
}
