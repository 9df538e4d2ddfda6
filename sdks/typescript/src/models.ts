/** Plain records of workflows and steps, converted from the wire messages. */

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  StepKind,
  StepStatus,
  WorkflowStatus,
  type ErrorInfo as PbErrorInfo,
  type Payload,
  type StepInfo as PbStepInfo,
  type WorkflowInfo as PbWorkflowInfo,
} from "./gen/stepline/v1/common_pb.js";
import { decode } from "./serde.js";

export type WorkflowStatusName = Exclude<keyof typeof WorkflowStatus, "UNSPECIFIED">;
export type StepStatusName = Exclude<keyof typeof StepStatus, "UNSPECIFIED">;
export type StepKindName = Exclude<keyof typeof StepKind, "UNSPECIFIED">;

/** Statuses a workflow does not leave by itself (PAUSED included: it waits for a resume). */
export const FINAL_STATUSES: ReadonlySet<WorkflowStatusName> = new Set([
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
  "TIMED_OUT",
  "PAUSED",
]);

/** A recorded failure. */
export interface ErrorRecord {
  type: string;
  message: string;
  traceback: string;
}

export interface WorkflowInfo {
  workflowId: string;
  workflowName: string;
  status: WorkflowStatusName;
  /** The decoded input (`{args, kwargs}` as recorded); undefined in listings without payloads. */
  input: unknown;
  /** The decoded output, when SUCCEEDED. */
  output: unknown;
  error: ErrorRecord | undefined;
  ownerWorkerId: string;
  epoch: bigint;
  recoveryAttempts: number;
  createdAt: Date | undefined;
  updatedAt: Date | undefined;
  startedAt: Date | undefined;
  completedAt: Date | undefined;
  deadline: Date | undefined;
  suspended: boolean;
  parentWorkflowId: string;
  parentStepId: string;
}

export interface StepInfo {
  stepId: string;
  stepName: string;
  status: StepStatusName;
  kind: StepKindName;
  output: unknown;
  error: ErrorRecord | undefined;
  attempts: number;
  workerId: string;
  epoch: bigint;
  startedAt: Date | undefined;
  completedAt: Date | undefined;
  timedOut: boolean;
  wakeAt: Date | undefined;
}

export function workflowStatusName(status: WorkflowStatus): WorkflowStatusName {
  return (WorkflowStatus[status] ?? "UNSPECIFIED") as WorkflowStatusName;
}

export function workflowStatusValue(name: WorkflowStatusName): WorkflowStatus {
  const value = WorkflowStatus[name];
  if (value === undefined) throw new TypeError(`unknown workflow status '${String(name)}'`);
  return value;
}

export function errorRecord(info: PbErrorInfo | undefined): ErrorRecord | undefined {
  return info === undefined ? undefined : { type: info.type, message: info.message, traceback: info.traceback };
}

function date(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

function payload(p: Payload | undefined): unknown {
  return p === undefined || p.data.length === 0 ? undefined : decode(p);
}

export function workflowInfo(w: PbWorkflowInfo): WorkflowInfo {
  return {
    workflowId: w.workflowId,
    workflowName: w.workflowName,
    status: workflowStatusName(w.status),
    input: payload(w.input),
    output: payload(w.output),
    error: errorRecord(w.error),
    ownerWorkerId: w.ownerWorkerId,
    epoch: w.epoch,
    recoveryAttempts: w.recoveryAttempts,
    createdAt: date(w.createdAt),
    updatedAt: date(w.updatedAt),
    startedAt: date(w.startedAt),
    completedAt: date(w.completedAt),
    deadline: date(w.deadline),
    suspended: w.suspended,
    parentWorkflowId: w.parentWorkflowId,
    parentStepId: w.parentStepId,
  };
}

export function stepInfo(s: PbStepInfo): StepInfo {
  return {
    stepId: s.stepId,
    stepName: s.stepName,
    status: (StepStatus[s.status] ?? "UNSPECIFIED") as StepStatusName,
    kind: (StepKind[s.kind] ?? "UNSPECIFIED") as StepKindName,
    output: payload(s.output),
    error: errorRecord(s.error),
    attempts: s.attempts,
    workerId: s.workerId,
    epoch: s.epoch,
    startedAt: date(s.startedAt),
    completedAt: date(s.completedAt),
    timedOut: s.timedOut,
    wakeAt: date(s.wakeAt),
  };
}
