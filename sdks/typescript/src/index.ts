/** Stepline's TypeScript SDK: a typed client and a worker for durable workflows. */

export { Client, WorkflowHandle, workflowRef, outcome } from "./client.js";
export type { ClientOptions, ListOptions, StartOptions, WorkflowRef } from "./client.js";
export * from "./errors.js";
export type { LogLevel, Logger } from "./log.js";
export { stderrLogger } from "./log.js";
export type {
  ErrorRecord,
  StepInfo,
  StepKindName,
  StepStatusName,
  WorkflowInfo,
  WorkflowStatusName,
} from "./models.js";
export type { ConnectionOptions } from "./transport.js";
export { ChildHandle, WorkflowContext } from "./worker/context.js";
export type { ChildOptions, SendOptions } from "./worker/context.js";
export type { StepContext, StepOptions } from "./worker/execution.js";
export type { RetryPolicy } from "./worker/retry.js";
export { Worker, SDK_VERSION } from "./worker/worker.js";
export type { WorkerOptions, WorkflowFunction } from "./worker/worker.js";
