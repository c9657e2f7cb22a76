/**
 * Structured logs for the agent: one JSON object per line with `level`, `time` (ISO 8601), `msg`
 * and the caller's fields. Bigints become decimal strings and errors their message, so every line
 * parses. No dependency: a device agent should not need a logging framework.
 */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

export function isLogLevel(level: unknown): level is LogLevel {
  return typeof level === "string" && level in RANK;
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return value.message;
  if (value instanceof Uint8Array) return "0x" + Buffer.from(value).toString("hex");
  return value;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; stderr by default, so that a command's stdout stays its result. */
  stream?: { write(line: string): unknown };
  fields?: LogFields;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const stream = opts.stream ?? process.stderr;
  const base = opts.fields ?? {};
  const write = (level: Exclude<LogLevel, "silent">, msg: string, fields?: LogFields) => {
    if (RANK[level] < min) return;
    const line = { level, time: new Date().toISOString(), msg, ...base, ...fields };
    stream.write(JSON.stringify(line, jsonSafe) + "\n");
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    child: (fields) => createLogger({ level: opts.level, stream, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = createLogger({ level: "silent" });
