/**
 * Values to payloads and back (JSON), workflow inputs, and errors to ErrorInfo and back.
 *
 * Every payload this SDK writes is UTF-8 JSON ("json" encoding). `undefined` is written as
 * `null`. A workflow input is `{"args": [...], "kwargs": {...}}`, as the Python SDK writes
 * it, so that workflows in either language can start each other's workflows.
 */

import { create } from "@bufbuild/protobuf";
import {
  ErrorInfoSchema,
  PayloadSchema,
  type ErrorInfo,
  type Payload,
} from "./gen/stepline/v1/common_pb.js";
import {
  NonDeterminismError,
  PayloadTooLargeError,
  RECORDED_STEPLINE_ERRORS,
  SerializationError,
  SteplineError,
  StepFailedError,
} from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes a value as a JSON payload; SerializationError says what could not be encoded. */
export function encode(value: unknown, what: string, maxBytes?: number): Payload {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new SerializationError(`${what} cannot be encoded as JSON: ${describe(err)}`);
  }
  if (text === undefined) {
    throw new SerializationError(`${what} cannot be encoded as JSON (a ${typeof value})`);
  }
  const data = encoder.encode(text);
  if (maxBytes !== undefined && maxBytes > 0 && data.length > maxBytes) {
    throw new PayloadTooLargeError(
      `${what} is ${data.length} bytes as JSON; the coordinator accepts at most ${maxBytes}`,
    );
  }
  return create(PayloadSchema, { data, encoding: "json" });
}

/** Decodes a payload: a JSON value for "json" (or ""), the bytes themselves for "raw". */
export function decode(payload: Payload | undefined): unknown {
  if (payload === undefined) return undefined;
  if (payload.encoding === "raw") return payload.data;
  if (payload.encoding !== "json" && payload.encoding !== "") {
    throw new SerializationError(`cannot decode a payload in encoding '${payload.encoding}'`);
  }
  if (payload.data.length === 0) return undefined;
  try {
    return JSON.parse(decoder.decode(payload.data)) as unknown;
  } catch (err) {
    throw new SerializationError(`payload is not valid JSON: ${describe(err)}`);
  }
}

/** A workflow input as the Python SDK writes it: `{"args": [...], "kwargs": {...}}`. */
export function encodeInput(
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  what: string,
  maxBytes?: number,
): Payload {
  return encode({ args, kwargs }, what, maxBytes);
}

/** The raw arguments of a workflow input. */
export interface WorkflowArgs {
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** Reads a workflow input: `{"args", "kwargs"}`, a bare JSON array (positional) or null. */
export function decodeArgs(payload: Payload | undefined): WorkflowArgs {
  const value = decode(payload);
  if (value === null || value === undefined) return { args: [], kwargs: {} };
  if (Array.isArray(value)) return { args: value, kwargs: {} };
  if (isRecord(value) && Object.keys(value).every((k) => k === "args" || k === "kwargs")) {
    const args = value["args"] ?? [];
    const kwargs = value["kwargs"] ?? {};
    if (Array.isArray(args) && isRecord(kwargs)) return { args, kwargs };
  }
  throw new SerializationError(
    'a workflow input must be {"args": [...], "kwargs": {...}}, a JSON array, or null',
  );
}

/**
 * The single input a TypeScript workflow function takes: the one positional argument; or
 * the keyword arguments as an object when there are only those; or undefined for none.
 */
export function workflowInput({ args, kwargs }: WorkflowArgs, name: string): unknown {
  const hasKwargs = Object.keys(kwargs).length > 0;
  if (args.length === 1 && !hasKwargs) return args[0];
  if (args.length === 0) return hasKwargs ? kwargs : undefined;
  throw new SerializationError(
    `workflow '${name}' takes one input, but was started with ${args.length} positional ` +
      `argument(s)${hasKwargs ? " and keyword arguments" : ""}; read ctx.args for all of them`,
  );
}

// --- errors -------------------------------------------------------------------------------

const SDK_PREFIX = "stepline.";

/** The recorded type of an error: "stepline.<Name>" for the SDK's own, else its name. */
export function typeName(err: unknown): string {
  if (err instanceof StepFailedError) return err.errorType;
  if (err instanceof NonDeterminismError) return SDK_PREFIX + "NonDeterminismError";
  if (err instanceof SteplineError) return SDK_PREFIX + err.name;
  if (err instanceof Error) return err.name || err.constructor.name || "Error";
  return "Error";
}

/** Records an error: type, message, stack, and `[message]` as details (as Python's args). */
export function errorInfo(err: unknown): ErrorInfo {
  const type = typeName(err);
  let message: string;
  let traceback = "";
  if (err instanceof StepFailedError) {
    message = err.errorMessage;
    traceback = err.traceback;
  } else if (err instanceof Error) {
    message = err.message;
    traceback = err.stack ?? "";
  } else {
    message = typeof err === "string" ? err : safeString(err);
  }
  // PostgreSQL's jsonb cannot hold U+0000: the coordinator would refuse the whole result.
  message = message.replaceAll("\u0000", "\\u0000");
  traceback = traceback.replaceAll("\u0000", "\\u0000");
  return create(ErrorInfoSchema, {
    type,
    message,
    traceback,
    details: encode([message], "error details"),
  });
}

/** The error workflow code sees for a recorded failure (on first runs and replays alike). */
export function rebuild(info: ErrorInfo | undefined): SteplineError {
  if (info === undefined) return new StepFailedError("Error", "failed without an error recorded");
  if (info.type.startsWith(SDK_PREFIX)) {
    const known = RECORDED_STEPLINE_ERRORS[info.type.slice(SDK_PREFIX.length)];
    if (known !== undefined) return new known(info.message);
  }
  return new StepFailedError(info.type, info.message, info.traceback);
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : safeString(err);
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
