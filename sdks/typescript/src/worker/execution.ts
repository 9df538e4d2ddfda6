/**
 * One execution of one workflow on this worker: replay, step calls, durable operations,
 * idleness and suspension, and the final result.
 *
 * A step call looks up its ID in the history sent with the assignment. A recorded outcome
 * is returned (or its error thrown) at once, without a round trip; a recorded ID under
 * another name is a non-determinism error, reported at once as the workflow's result
 * (the coordinator then records the run PAUSED). Otherwise the body runs, its outcome is
 * sent, and the call resolves only when the coordinator has acknowledged it (StepAck).
 * Durable operations resolve when their StepDone arrives.
 *
 * Stopping (Abandon, Suspend, a result sent) is immediate: every pending and future
 * durable call of the execution stays pending for ever, so no more of its code runs past
 * them, and running step bodies see their AbortSignal fire.
 */

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { StepStatus, type ErrorInfo, type Payload } from "../gen/stepline/v1/common_pb.js";
import {
  WorkerEventSchema,
  type Assignment,
  type RecordedStep,
  type StepDone,
  type WorkerEvent,
} from "../gen/stepline/v1/worker_pb.js";
import { NonDeterminismError, SteplineError, StepTimeoutError } from "../errors.js";
import type { Logger } from "../log.js";
import { decode, decodeArgs, describe, encode, errorInfo, rebuild, workflowInput } from "../serde.js";
import { Retry } from "./retry.js";
import { CURRENT, IN_STEP_BODY, Scope } from "./scope.js";
import { called } from "./waits.js";

export type EventKind = MessageInitShape<typeof WorkerEventSchema>["kind"];

export function event(kind: EventKind): WorkerEvent {
  return create(WorkerEventSchema, { kind });
}

/** What an execution needs from its worker. */
export interface Link {
  readonly maxPayloadBytes: number | undefined;
  /** Ms an execution may wait in memory before it is suspended; undefined: never. */
  readonly suspendAfterMs: number | undefined;
  readonly log: Logger;
  send(ev: WorkerEvent): void;
  leaseCurrent(): boolean;
  leaseHeld(): Promise<void>;
  /** A step body starts or finishes, an acknowledgement arrived (shutdown waits). */
  progressed(): void;
  /** The execution gave itself back while waiting: forget it. */
  suspended(ex: Execution): void;
}

/** What a step body is told about itself. */
export interface StepContext {
  readonly workflowId: string;
  readonly stepId: string;
  readonly stepName: string;
  readonly attempt: number;
  /** Fires when the execution is abandoned or the attempt's timeout passes. */
  readonly signal: AbortSignal;
}

export interface StepOptions {
  /** Retry policy; default: no retries (one attempt). */
  retries?: import("./retry.js").RetryPolicy;
  /** An attempt that runs longer fails with StepTimeoutError (its signal fires). */
  timeoutMs?: number;
}

/** The outcome of a durable operation: its decoded output and whether it timed out. */
export interface OperationOutcome {
  value: unknown;
  timedOut: boolean;
}

export type WorkflowFn = (ctx: never, input: never) => Promise<unknown>;

/** A promise that never settles: what durable calls of a stopped execution return. */
function never<T>(): Promise<T> {
  return new Promise<T>(() => undefined);
}

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

interface Call extends Pending<StepDone> {
  event: WorkerEvent;
  isWait: boolean;
}

export class Execution {
  readonly workflowId: string;
  readonly epoch: bigint;
  readonly recorded: Map<string, RecordedStep>;
  readonly root = new Scope();
  /** Abandoned, suspended or cancelled-and-stopped: nothing more runs or is reported. */
  stopped = false;
  fatal: SteplineError | undefined;
  /** The WorkflowResult sent, kept until its WorkflowAck (to resend after a reconnect). */
  result: WorkerEvent | undefined;
  done = false;
  private cancelled = false;
  private readonly unacked = new Map<string, WorkerEvent>();
  private readonly acks = new Map<string, Pending<void>>();
  private readonly calls = new Map<string, Call>();
  private readonly controllers = new Set<AbortController>();
  private bodies = 0;
  private idle = false;
  private suspendTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly assignment: Assignment,
    private readonly link: Link,
  ) {
    this.workflowId = assignment.workflowId;
    this.epoch = assignment.epoch;
    this.recorded = new Map(assignment.steps.map((s) => [s.stepId, s]));
  }

  get maxPayloadBytes(): number | undefined {
    return this.link.maxPayloadBytes;
  }

  // --- driven by the worker -------------------------------------------------------------

  /** Runs the workflow function (given its input and raw arguments) and reports how it ended. */
  async run(fn: (input: unknown, args: ReturnType<typeof decodeArgs>) => Promise<unknown>): Promise<void> {
    let output: Payload | undefined;
    let error: ErrorInfo | undefined;
    try {
      const args = decodeArgs(this.assignment.input);
      const input = workflowInput(args, this.assignment.workflowName);
      const value = await CURRENT.run(this.root, () => fn(input, args));
      if (this.fatal !== undefined) throw this.fatal;
      output = encode(value, `the result of workflow '${this.assignment.workflowName}'`, this.link.maxPayloadBytes);
    } catch (err) {
      error = errorInfo(this.fatal ?? err);
      if (this.fatal === undefined && !this.stopped) {
        this.link.log("info", `workflow ${this.workflowId} failed: ${describe(err)}`);
      }
    }
    this.finish(output, error);
  }

  /** Sends the workflow's result (once); the execution does nothing more. */
  finish(output: Payload | undefined, error: ErrorInfo | undefined): void {
    if (this.stopped || this.result !== undefined) return;
    this.cancelSuspend();
    this.result = event({
      case: "workflowResult",
      value: {
        workflowId: this.workflowId,
        epoch: this.epoch,
        outcome: error !== undefined ? { case: "error", value: error } : { case: "output", value: output! },
      },
    });
    this.link.send(this.result);
  }

  stepAcked(stepId: string): void {
    this.unacked.delete(stepId);
    const pending = this.acks.get(stepId);
    this.acks.delete(stepId);
    pending?.resolve();
    this.link.progressed();
  }

  stepDone(ev: StepDone): void {
    this.calls.get(ev.stepId)?.resolve(ev);
    this.link.progressed();
  }

  workflowAcked(): void {
    this.done = true;
    this.stop();
  }

  /** Nothing of this execution waits for an acknowledgement (open waits aside). */
  get settled(): boolean {
    let pending = 0;
    for (const c of this.calls.values()) if (!c.isWait) pending += 1;
    return this.stopped || (this.unacked.size === 0 && pending === 0 && this.bodies === 0 && this.result === undefined);
  }

  /** The coordinator refused an event of this execution; nothing of it was written. */
  rejected(stepId: string, message: string): void {
    const problem = new SteplineError(`the coordinator refused ${stepId || "the result"}: ${message}`);
    if (stepId !== "") {
      this.unacked.delete(stepId);
      this.fatal ??= problem;
      const ack = this.acks.get(stepId);
      this.acks.delete(stepId);
      ack?.reject(problem);
      this.calls.get(stepId)?.reject(problem);
    } else if (this.result?.kind.case === "workflowResult" && this.result.kind.value.outcome.case === "output") {
      // The output was refused: record the refusal as the workflow's error instead.
      this.result = undefined;
      this.finish(undefined, errorInfo(problem));
    } else {
      this.link.log("error", `workflow ${this.workflowId}: result refused: ${message}`);
    }
  }

  /** Cancelled: a running step body may finish (its result is refused); the execution
   * stops then, or at its next durable call. */
  cancel(reason: string): void {
    if (this.cancelled || this.stopped) return;
    this.cancelled = true;
    this.link.log("info", `workflow ${this.workflowId} epoch ${this.epoch} cancelled: ${reason}`);
    if (this.bodies === 0) this.stop();
  }

  /** Stops at once: another epoch owns the workflow, or it has finished. */
  abandon(reason: string): void {
    if (!this.stopped) this.link.log("info", `workflow ${this.workflowId} epoch ${this.epoch} abandoned: ${reason}`);
    this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelSuspend();
    for (const c of this.controllers) c.abort(new SteplineError("the execution was stopped"));
    // Pending durable calls are dropped unsettled: the workflow code stops where it is.
    this.acks.clear();
    this.calls.clear();
  }

  /** What to resend after a reconnect: unacknowledged results, operations not done
   * (the coordinator answers a repeat with its recorded outcome), Idle, the result. */
  pendingEvents(): WorkerEvent[] {
    if (this.stopped) return [];
    const events = [...this.unacked.values(), ...[...this.calls.values()].map((c) => c.event)];
    if (this.idle) events.push(this.idleEvent());
    if (this.result !== undefined) events.push(this.result);
    return events;
  }

  // --- for step calls and durable operations -------------------------------------------

  private nondeterminism(stepId: string, recorded: string, called: string): never {
    const err = new NonDeterminismError(this.workflowId, stepId, recorded, called);
    this.fatal ??= err;
    this.link.log("error", err.message);
    // Reported at once, whatever the workflow code does with the error.
    this.finish(undefined, errorInfo(this.fatal));
    throw err;
  }

  /** Resolves if more may run; stays pending if the execution stopped; throws a fatal error. */
  private async running(): Promise<void> {
    if (this.stopped || this.cancelled || this.result !== undefined) return never();
    if (this.fatal !== undefined) throw this.fatal;
  }

  /** One step call. Its ID was taken when the workflow code called it. */
  async runStep(
    stepId: string,
    name: string,
    fn: (s: StepContext) => unknown,
    options: StepOptions,
    retry: Retry,
  ): Promise<unknown> {
    const recorded = this.recorded.get(stepId);
    let attempt = 1;
    if (recorded !== undefined) {
      if (recorded.stepName !== name) this.nondeterminism(stepId, recorded.stepName, name);
      if (recorded.status === StepStatus.SUCCEEDED) return recordedOutput(recorded);
      if (recorded.status === StepStatus.FAILED) throw rebuild(recordedError(recorded));
      attempt = recorded.attempts + 1; // RUNNING: that attempt was interrupted
    }
    await this.running();
    let value: unknown;
    for (;;) {
      if (!this.link.leaseCurrent()) {
        await this.link.leaseHeld();
        await this.running();
      }
      this.link.send(
        event({ case: "stepStart", value: { workflowId: this.workflowId, epoch: this.epoch, stepId, stepName: name, attempt } }),
      );
      const controller = new AbortController();
      const context: StepContext = { workflowId: this.workflowId, stepId, stepName: name, attempt, signal: controller.signal };
      this.bodyStarted(controller);
      let failure: { err: unknown } | undefined;
      try {
        value = await CURRENT.run(IN_STEP_BODY, () => attemptBody(fn, context, controller, options.timeoutMs));
      } catch (err) {
        failure = { err };
      } finally {
        this.bodyFinished(controller);
      }
      if (this.stopped) return never();
      if (failure === undefined) break;
      if (retry.retries(failure.err, attempt)) {
        this.link.log("info", `step ${stepId} (${name}) attempt ${attempt} failed: ${describe(failure.err)}; retrying`);
        await this.backOff(retry.delay(attempt));
        await this.running();
        attempt += 1;
        continue;
      }
      const info = errorInfo(failure.err);
      await this.record(stepId, name, attempt, undefined, info);
      throw rebuild(info);
    }
    let data: Payload;
    try {
      data = encode(value, `the result of step '${name}'`, this.link.maxPayloadBytes);
    } catch (err) {
      const info = errorInfo(err);
      await this.record(stepId, name, attempt, undefined, info);
      throw rebuild(info);
    }
    await this.record(stepId, name, attempt, data, undefined);
    // The workflow sees the value as a replay will: decoded from what was recorded.
    return decode(data);
  }

  /** Sends a step's outcome; resolves once the coordinator has made it durable. */
  private async record(
    stepId: string,
    name: string,
    attempt: number,
    output: Payload | undefined,
    error: ErrorInfo | undefined,
  ): Promise<void> {
    await this.running();
    const ev = event({
      case: "stepResult",
      value: {
        workflowId: this.workflowId,
        epoch: this.epoch,
        stepId,
        stepName: name,
        attempt,
        outcome: error !== undefined ? { case: "error", value: error } : { case: "output", value: output! },
      },
    });
    this.unacked.set(stepId, ev);
    try {
      await new Promise<void>((resolve, reject) => {
        this.acks.set(stepId, { resolve, reject });
        this.link.send(ev);
      });
    } finally {
      this.updateIdle();
    }
  }

  /**
   * Runs (or replays) one durable operation recorded as `stepName` ("stepline.sleep", ...):
   * a recorded outcome returns at once; otherwise `build()` is sent and the outcome is
   * its StepDone. A wait's duration or timeout counts from this call (see waits.ts).
   */
  async operate(stepId: string, stepName: string, isWait: boolean, build: () => EventKind): Promise<OperationOutcome> {
    const at = performance.now();
    const recorded = this.recorded.get(stepId);
    if (recorded !== undefined) {
      if (recorded.stepName !== stepName) this.nondeterminism(stepId, recorded.stepName, stepName);
      if (recorded.status === StepStatus.SUCCEEDED) {
        return { value: recordedOutput(recorded), timedOut: recorded.timedOut };
      }
      if (recorded.status === StepStatus.FAILED) throw rebuild(recordedError(recorded));
      // WAITING: the wait goes on; the coordinator kept its condition and wake time.
    }
    await this.running();
    const ev = event(build());
    if (isWait) called(ev, at);
    let done: StepDone;
    try {
      done = await new Promise<StepDone>((resolve, reject) => {
        this.calls.set(stepId, { event: ev, isWait, resolve, reject });
        this.link.send(ev);
        this.updateIdle();
      });
    } finally {
      this.calls.delete(stepId);
      this.updateIdle();
    }
    if (done.outcome.case === "error") throw rebuild(done.outcome.value);
    const value = done.outcome.case === "output" ? decode(done.outcome.value) : undefined;
    return { value, timedOut: done.timedOut };
  }

  private bodyStarted(controller: AbortController): void {
    this.bodies += 1;
    this.controllers.add(controller);
    this.updateIdle();
  }

  private bodyFinished(controller: AbortController): void {
    this.bodies -= 1;
    this.controllers.delete(controller);
    this.link.progressed();
    if (this.cancelled && this.bodies === 0) this.stop();
  }

  /** Waits between two attempts of a step; the execution is busy meanwhile, not idle. */
  private async backOff(ms: number): Promise<void> {
    this.bodies += 1;
    this.updateIdle();
    try {
      await new Promise((resolve) => setTimeout(resolve, ms));
    } finally {
      this.bodies -= 1;
      if (this.cancelled && this.bodies === 0) this.stop();
    }
  }

  // --- idleness and suspension ---------------------------------------------------------

  private idleEvent(): WorkerEvent {
    return event({ case: "idle", value: { workflowId: this.workflowId, epoch: this.epoch } });
  }

  private waits(): string[] {
    return [...this.calls.entries()].filter(([, c]) => c.isWait).map(([id]) => id);
  }

  /** Idle: blocked on open waits only (no step body, result or operation in flight). */
  private updateIdle(): void {
    const waits = this.waits();
    const idle =
      waits.length > 0 &&
      !this.stopped &&
      this.result === undefined &&
      this.bodies === 0 &&
      this.unacked.size === 0 &&
      this.calls.size === waits.length;
    if (idle === this.idle) return;
    this.idle = idle;
    if (!idle) {
      this.cancelSuspend();
      return;
    }
    this.link.send(this.idleEvent());
    const after = this.link.suspendAfterMs;
    if (after !== undefined) this.suspendTimer = setTimeout(() => this.suspend(), after);
  }

  private cancelSuspend(): void {
    clearTimeout(this.suspendTimer);
    this.suspendTimer = undefined;
  }

  private suspend(): void {
    this.suspendTimer = undefined;
    if (!this.idle || this.stopped) return;
    const waitingOn = this.waits().sort();
    this.link.send(event({ case: "suspend", value: { workflowId: this.workflowId, epoch: this.epoch, waitingOn } }));
    this.link.log("info", `workflow ${this.workflowId} suspended while waiting on ${waitingOn.join(", ")}`);
    this.stop();
    this.link.suspended(this);
  }
}

function recordedOutput(step: RecordedStep): unknown {
  return step.outcome.case === "output" ? decode(step.outcome.value) : undefined;
}

function recordedError(step: RecordedStep): ErrorInfo | undefined {
  return step.outcome.case === "error" ? step.outcome.value : undefined;
}

/** One attempt of a step body, within its timeout. */
function attemptBody(
  fn: (s: StepContext) => unknown,
  context: StepContext,
  controller: AbortController,
  timeoutMs: number | undefined,
): Promise<unknown> {
  const body = Promise.resolve().then(() => fn(context));
  if (timeoutMs === undefined) return body;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      const err = new StepTimeoutError(
        `step '${context.stepName}' (${context.stepId}) attempt ${context.attempt} timed out after ${timeoutMs} ms`,
      );
      controller.abort(err);
      reject(err);
    }, timeoutMs);
    body.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export function timeout(ms: number | undefined): ReturnType<typeof durationFromMs> | undefined {
  return ms === undefined ? undefined : durationFromMs(ms);
}
