/** The Client: start workflows by name from anywhere, look at them, wait for results. */

import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client as RpcClient } from "@connectrpc/connect";
import { WorkflowService, StartWorkflowRequestSchema } from "./gen/stepline/v1/client_pb.js";
import { InvalidArgumentError, ResultTimeoutError, WorkflowFailedError } from "./errors.js";
import {
  FINAL_STATUSES,
  stepInfo,
  workflowInfo,
  workflowStatusValue,
  type StepInfo,
  type WorkflowInfo,
  type WorkflowStatusName,
} from "./models.js";
import { decode, encode, encodeInput } from "./serde.js";
import { call, SEND_OVERRIDES, transport, type ConnectionOptions } from "./transport.js";

/**
 * A workflow's name with the types of its input and output, for typed starts. Returned by
 * `worker.workflow(...)`; `workflowRef<I, O>("name")` makes one for a workflow served
 * elsewhere (in Python, say).
 */
export interface WorkflowRef<I, O> {
  readonly name: string;
  /** Never set: carries the types. */
  readonly __types?: (input: I) => O;
}

export function workflowRef<I = unknown, O = unknown>(name: string): WorkflowRef<I, O> {
  return { name };
}

export interface StartOptions {
  /** The workflow's ID. Starting an ID that exists starts nothing and returns that
   * workflow (WorkflowConflictError if it has another name). Default: generated. */
  workflowId?: string;
  /** The coordinator ends the workflow TIMED_OUT this many ms after it is recorded. */
  timeoutMs?: number;
  /** The coordinator ends the workflow TIMED_OUT at this time (the earlier one applies). */
  deadline?: Date;
  /** For workflows with several parameters (Python ones): the positional arguments,
   * instead of the single `input`. */
  args?: unknown[];
  /** Keyword arguments (for Python workflows). */
  kwargs?: Record<string, unknown>;
}

export interface ListOptions {
  name?: string;
  statuses?: WorkflowStatusName[];
  createdAfter?: Date;
  createdBefore?: Date;
  /** At most this many (default 100, at most the coordinator's max_page_size). */
  pageSize?: number;
  pageToken?: string;
  descending?: boolean;
  includePayloads?: boolean;
}

export interface ClientOptions extends ConnectionOptions {}

/** How long one AwaitWorkflow/GetEvent call may wait at the coordinator. */
const MAX_WAIT_MS = 60_000;

export class Client {
  readonly rpc: RpcClient<typeof WorkflowService>;

  constructor(options: ClientOptions = {}) {
    this.rpc = createClient(WorkflowService, transport(options));
  }

  /** Starts a workflow by name (or typed ref) with one input; see StartOptions. */
  async start<I, O>(workflow: WorkflowRef<I, O>, input: I, options?: StartOptions): Promise<WorkflowHandle<O>>;
  async start<O = unknown>(workflow: string, input?: unknown, options?: StartOptions): Promise<WorkflowHandle<O>>;
  async start(
    workflow: string | WorkflowRef<unknown, unknown>,
    input?: unknown,
    options: StartOptions = {},
  ): Promise<WorkflowHandle<unknown>> {
    const name = typeof workflow === "string" ? workflow : workflow.name;
    if (options.args !== undefined && input !== undefined) {
      throw new InvalidArgumentError("give either an input or options.args, not both");
    }
    if (options.timeoutMs !== undefined && !(options.timeoutMs >= 0)) {
      throw new InvalidArgumentError("timeoutMs must be a non-negative number");
    }
    if (options.deadline !== undefined && Number.isNaN(options.deadline.getTime())) {
      throw new InvalidArgumentError("deadline is an invalid Date");
    }
    const args = options.args ?? (input === undefined ? [] : [input]);
    const request = create(StartWorkflowRequestSchema, {
      workflowName: name,
      workflowId: options.workflowId ?? "",
      input: encodeInput(args, options.kwargs ?? {}, `the input of workflow '${name}'`),
    });
    if (options.timeoutMs !== undefined) request.timeout = durationFromMs(options.timeoutMs);
    if (options.deadline !== undefined) request.deadline = timestampFromDate(options.deadline);
    const response = await call(() => this.rpc.startWorkflow(request));
    const info = response.workflow;
    if (info === undefined) throw new InvalidArgumentError("the coordinator answered without a workflow");
    return new WorkflowHandle(this, info.workflowId, response.created);
  }

  /** A handle to an existing workflow, by ID. */
  handle<O = unknown>(workflowId: string): WorkflowHandle<O> {
    return new WorkflowHandle<O>(this, workflowId, false);
  }

  async get(workflowId: string): Promise<WorkflowInfo> {
    const r = await call(() => this.rpc.getWorkflow({ workflowId }));
    if (r.workflow === undefined) throw new InvalidArgumentError("the coordinator answered without a workflow");
    return workflowInfo(r.workflow);
  }

  /** Waits until the workflow is final (or `timeoutMs` passes) and returns it as it is. */
  async wait(workflowId: string, timeoutMs = Infinity): Promise<{ info: WorkflowInfo; done: boolean }> {
    const deadline = Date.now() + Math.max(timeoutMs, 0);
    for (;;) {
      const remaining = Math.max(deadline - Date.now(), 0);
      const wait = Math.min(remaining, MAX_WAIT_MS);
      const r = await call(() =>
        this.rpc.awaitWorkflow({ workflowId, timeoutMs: Math.floor(wait) }, { timeoutMs: wait + 10_000 }),
      );
      if (r.workflow === undefined) throw new InvalidArgumentError("the coordinator answered without a workflow");
      const info = workflowInfo(r.workflow);
      const done = r.done || FINAL_STATUSES.has(info.status);
      if (done || remaining <= MAX_WAIT_MS) return { info, done };
    }
  }

  /** One page of workflows matching the filters (they combine with AND). */
  async list(options: ListOptions = {}): Promise<{ workflows: WorkflowInfo[]; nextPageToken: string }> {
    const r = await call(() =>
      this.rpc.listWorkflows({
        workflowName: options.name ?? "",
        statuses: (options.statuses ?? []).map(workflowStatusValue),
        ...(options.createdAfter ? { createdAfter: timestampFromDate(options.createdAfter) } : {}),
        ...(options.createdBefore ? { createdBefore: timestampFromDate(options.createdBefore) } : {}),
        pageSize: options.pageSize ?? 0,
        pageToken: options.pageToken ?? "",
        descending: options.descending ?? false,
        includePayloads: options.includePayloads ?? false,
      }),
    );
    return { workflows: r.workflows.map(workflowInfo), nextPageToken: r.nextPageToken };
  }

  /** The workflow's recorded steps, in the order they were first recorded. */
  async steps(workflowId: string): Promise<StepInfo[]> {
    const r = await call(() => this.rpc.listSteps({ workflowId }));
    return r.steps.map(stepInfo);
  }

  /**
   * Sends a message to a workflow's mailbox, for its `ctx.recv(topic)`. Messages sent
   * before the recv is reached are kept. With an idempotency key, sending the same key
   * again changes nothing (returns `{duplicate: true}`). WorkflowNotFoundError for an
   * unknown workflow, WorkflowFinishedError for a finished one.
   */
  async send(
    workflowId: string,
    message: unknown,
    options: { topic?: string; idempotencyKey?: string } = {},
  ): Promise<{ duplicate: boolean }> {
    const payload = encode(message, `the message to workflow '${workflowId}'`);
    const r = await call(
      () =>
        this.rpc.send({
          workflowId,
          topic: options.topic ?? "",
          message: payload,
          idempotencyKey: options.idempotencyKey ?? "",
        }),
      SEND_OVERRIDES,
    );
    return { duplicate: r.duplicate };
  }

  /** The value of a workflow's event, waiting up to `timeoutMs` (default 60 s) for it to
   * be set; undefined if it was not. */
  async getEvent(workflowId: string, key: string, options: { timeoutMs?: number } = {}): Promise<unknown> {
    const deadline = Date.now() + Math.max(options.timeoutMs ?? 60_000, 0);
    for (;;) {
      const remaining = Math.max(deadline - Date.now(), 0);
      const wait = Math.min(remaining, MAX_WAIT_MS);
      const r = await call(() =>
        this.rpc.getEvent({ workflowId, key, timeoutMs: Math.floor(wait) }, { timeoutMs: wait + 10_000 }),
      );
      if (r.found) return decode(r.value);
      if (remaining <= MAX_WAIT_MS) return undefined;
    }
  }

  /** Cancels a workflow and its unfinished descendants; returns the IDs cancelled. */
  async cancel(workflowId: string, reason = ""): Promise<string[]> {
    const r = await call(() => this.rpc.cancelWorkflow({ workflowId, reason }));
    return r.cancelled;
  }

  /** Runs a FAILED, CANCELLED, TIMED_OUT, PAUSED, ... workflow again under its ID. */
  async resume(workflowId: string): Promise<WorkflowInfo> {
    const r = await call(() => this.rpc.resumeWorkflow({ workflowId }));
    if (r.workflow === undefined) throw new InvalidArgumentError("the coordinator answered without a workflow");
    return workflowInfo(r.workflow);
  }

  /** A new run of a workflow that reuses its finished steps recorded before `fromStep`. */
  async fork(workflowId: string, fromStep: string, newWorkflowId = ""): Promise<WorkflowInfo> {
    const r = await call(() => this.rpc.forkWorkflow({ workflowId, fromStep, newWorkflowId }));
    if (r.workflow === undefined) throw new InvalidArgumentError("the coordinator answered without a workflow");
    return workflowInfo(r.workflow);
  }
}

/** A started workflow. */
export class WorkflowHandle<O = unknown> {
  constructor(
    readonly client: Client,
    readonly workflowId: string,
    /** Whether the start that made this handle recorded the workflow. */
    readonly created: boolean,
  ) {}

  /**
   * Waits for the workflow to finish and returns its output. Throws WorkflowFailedError
   * (with the recorded error's type and message) if it ended otherwise, and
   * ResultTimeoutError if it is still running after `timeoutMs`.
   */
  async result(options: { timeoutMs?: number } = {}): Promise<O> {
    const { info, done } = await this.client.wait(this.workflowId, options.timeoutMs);
    if (!done) {
      throw new ResultTimeoutError(
        `workflow '${this.workflowId}' is still ${info.status} after ${options.timeoutMs} ms`,
      );
    }
    return outcome(info) as O;
  }

  info(): Promise<WorkflowInfo> {
    return this.client.get(this.workflowId);
  }

  async status(): Promise<WorkflowStatusName> {
    return (await this.info()).status;
  }

  steps(): Promise<StepInfo[]> {
    return this.client.steps(this.workflowId);
  }

  cancel(reason = ""): Promise<string[]> {
    return this.client.cancel(this.workflowId, reason);
  }
}

/** The output of a final workflow, or the WorkflowFailedError saying how it ended. */
export function outcome(info: WorkflowInfo): unknown {
  if (info.status === "SUCCEEDED") return info.output;
  const error = info.error;
  throw new WorkflowFailedError(
    info.workflowId,
    info.status,
    error?.type ?? info.status,
    error?.message ?? `workflow ended ${info.status}`,
    error?.traceback ?? "",
  );
}
