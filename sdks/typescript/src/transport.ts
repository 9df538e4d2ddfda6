/**
 * Everything gRPC: the HTTP/2 transport, the API key, and the one place where gRPC
 * statuses become the SDK's errors.
 */

import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  AuthenticationError,
  CoordinatorUnavailableError,
  InvalidArgumentError,
  SteplineError,
  WorkflowConflictError,
  WorkflowFinishedError,
  WorkflowNotFoundError,
} from "./errors.js";

/** How to reach a coordinator; shared by Client and Worker. */
export interface ConnectionOptions {
  /** "host:port" (plain-text HTTP/2) or a URL "http://host:port" / "https://host:port". */
  address?: string;
  /** The coordinator's API key (sent as "authorization: Bearer <key>"); default: the
   * STEPLINE_API_KEY environment variable, or none. */
  apiKey?: string;
}

export const DEFAULT_ADDRESS = "127.0.0.1:7420";

export function apiKeyOrEnv(apiKey: string | undefined): string | undefined {
  if (apiKey !== undefined) return apiKey || undefined;
  return process.env["STEPLINE_API_KEY"] || undefined;
}

export function baseUrl(address: string): string {
  if (/^https?:\/\//.test(address)) return address;
  if (!/^[^/\s]+:\d+$/.test(address)) {
    throw new InvalidArgumentError(`'${address}' is not an address like "127.0.0.1:7420"`);
  }
  return `http://${address}`;
}

/** An HTTP/2 gRPC transport to the coordinator, with the API key on every call. */
export function transport(options: ConnectionOptions): Transport {
  const apiKey = apiKeyOrEnv(options.apiKey);
  const interceptors: Interceptor[] = [];
  if (apiKey !== undefined) {
    interceptors.push((next) => async (req) => {
      req.header.set("authorization", `Bearer ${apiKey}`);
      return await next(req);
    });
  }
  return createGrpcTransport({
    baseUrl: baseUrl(options.address ?? DEFAULT_ADDRESS),
    interceptors,
    // Keep idle connections alive and notice dead ones.
    pingIntervalMs: 10_000,
    pingTimeoutMs: 5_000,
  });
}

const TRANSLATION: Partial<Record<Code, new (message: string) => SteplineError>> = {
  [Code.NotFound]: WorkflowNotFoundError,
  [Code.AlreadyExists]: WorkflowConflictError,
  [Code.InvalidArgument]: InvalidArgumentError,
  [Code.Unauthenticated]: AuthenticationError,
  [Code.Unavailable]: CoordinatorUnavailableError,
};

/** The SDK's error for a failed call (anything else is passed through unchanged). */
export function translate(err: unknown, overrides: Partial<Record<Code, new (m: string) => SteplineError>> = {}): unknown {
  if (!(err instanceof ConnectError)) return err;
  const kind = overrides[err.code] ?? TRANSLATION[err.code] ?? SteplineError;
  const error = new kind(err.rawMessage || Code[err.code]);
  (error as { code?: Code }).code = err.code;
  return error;
}

/** The error for a per-event ErrorStatus (a gRPC code number and message). */
export function translateCode(code: number, message: string): SteplineError {
  const kind = TRANSLATION[code as Code] ?? SteplineError;
  return new kind(message);
}

/** Runs a unary call, translating its gRPC status. */
export async function call<T>(
  run: () => Promise<T>,
  overrides?: Partial<Record<Code, new (m: string) => SteplineError>>,
): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw translate(err, overrides);
  }
}

/** Send's FAILED_PRECONDITION means the workflow has finished. */
export const SEND_OVERRIDES = { [Code.FailedPrecondition]: WorkflowFinishedError };
