/**
 * What workflow code calls: `ctx.step`, `ctx.scope`, the durable operations (sleep,
 * recv, send, events, children) and the deterministic helpers (now, random, uuid).
 *
 * Every call takes its step ID synchronously, before anything is awaited (see scope.ts),
 * and checks that it runs in its own scope: inside `ctx.scope(fn)`, call steps on the
 * context passed to `fn`, not on the outer one.
 */

import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { WorkflowRef } from "../client.js";
import { InvalidArgumentError, NotInWorkflowError, ResultTimeoutError } from "../errors.js";
import { encode, encodeInput, type WorkflowArgs } from "../serde.js";
import { timeout, type EventKind, type Execution, type OperationOutcome, type StepContext, type StepOptions } from "./execution.js";
import { Retry } from "./retry.js";
import { CURRENT, IN_STEP_BODY, Scope } from "./scope.js";

const RESERVED = "stepline.";

export interface SendOptions {
  topic?: string;
  /** A second message with the same key to the same workflow is dropped. */
  idempotencyKey?: string;
}

export interface ChildOptions {
  /** The child's workflow ID; default "<parent ID>/<step ID of the start>". */
  workflowId?: string;
}

/** A child workflow started by `ctx.startChild`. */
export class ChildHandle<O> {
  constructor(
    private readonly ctx: WorkflowContext,
    readonly workflowId: string,
  ) {}

  /** Waits durably for the child's output (or throws its error). Takes a step ID of the
   * scope that started the child, at this call. */
  result(options: { timeoutMs?: number } = {}): Promise<O> {
    return this.ctx.awaitWorkflow<O>(this.workflowId, options);
  }
}

export class WorkflowContext {
  constructor(
    private readonly ex: Execution,
    private readonly own: Scope,
    private readonly raw: WorkflowArgs,
  ) {}

  get workflowId(): string {
    return this.ex.workflowId;
  }

  /** The workflow's raw arguments, for workflows started with several (from Python). */
  get args(): unknown[] {
    return this.raw.args;
  }

  get kwargs(): Record<string, unknown> {
    return this.raw.kwargs;
  }

  /** How many times this workflow has been recovered, counting this assignment. */
  get recoveryAttempt(): number {
    return this.ex.assignment.recoveryAttempt;
  }

  /** The next step ID of this scope, after checking that this scope's code is running. */
  private take(what: string): string {
    this.check(what);
    return this.own.nextStepId();
  }

  private check(what: string): void {
    const current = CURRENT.getStore();
    if (current === IN_STEP_BODY) {
      throw new NotInWorkflowError(`${what} cannot be called inside a step body; call it from the workflow`);
    }
    if (current !== this.own) {
      throw new NotInWorkflowError(
        `${what} was called on the context of another scope: inside ctx.scope(fn), ` +
          `use the context passed to fn (a helper run concurrently must use its own scope)`,
      );
    }
  }

  /**
   * Runs `fn` as a durable step named `name`: once recorded, its result is returned
   * without running it again. The step takes its ID now, at the call. Resolves with the
   * JSON round-trip of the value, only once the coordinator has committed it; a failure
   * (after the retries of `options.retries`) rejects with StepFailedError, on the first
   * run and on replays alike.
   */
  step<T>(name: string, fn: (step: StepContext) => T | Promise<T>, options: StepOptions = {}): Promise<Awaited<T>> {
    checkName(name, "a step name");
    if (name.startsWith(RESERVED)) throw new InvalidArgumentError(`step names starting with "${RESERVED}" are reserved`);
    if (typeof fn !== "function") throw new InvalidArgumentError(`step '${name}' needs a function`);
    if (options.timeoutMs !== undefined && !(options.timeoutMs > 0)) {
      throw new InvalidArgumentError(`step '${name}': timeoutMs must be positive`);
    }
    const retry = Retry.from(options.retries);
    return this.ex.runStep(this.take(`step '${name}'`), name, fn, options, retry) as Promise<Awaited<T>>;
  }

  /**
   * Runs `fn` in a scope of its own: it takes the next task number of this scope now, and
   * `fn`'s steps are numbered within it ("t1/1", "t1/2", ...), whatever order concurrent
   * scopes finish in. Use it for every helper that awaits several steps and runs
   * concurrently with others (`Promise.all([ctx.scope(a), ctx.scope(b)])`).
   */
  scope<T>(fn: (ctx: WorkflowContext) => Promise<T>): Promise<T> {
    this.check("ctx.scope");
    if (typeof fn !== "function") throw new InvalidArgumentError("ctx.scope needs a function");
    const child = this.own.child();
    const ctx = new WorkflowContext(this.ex, child, this.raw);
    return CURRENT.run(child, () => Promise.resolve().then(() => fn(ctx)));
  }

  /** `Promise.all` of `fns`, each in its own scope (numbered in order, at this call). */
  concurrently<T extends readonly ((ctx: WorkflowContext) => Promise<unknown>)[]>(
    fns: T,
  ): Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }> {
    return Promise.all(fns.map((fn) => this.scope(fn))) as Promise<{ -readonly [K in keyof T]: Awaited<ReturnType<T[K]>> }>;
  }

  // --- durable operations ------------------------------------------------------------------

  private operate(
    kind: string,
    isWait: boolean,
    build: (base: { workflowId: string; epoch: bigint; stepId: string }) => EventKind,
  ): Promise<OperationOutcome> {
    const stepId = this.take(`ctx.${kind}`);
    const base = { workflowId: this.ex.workflowId, epoch: this.ex.epoch, stepId };
    return this.ex.operate(stepId, RESERVED + kind, isWait, () => build(base));
  }

  /** Sleeps durably: the wake time is recorded at the first run, so after a crash or a
   * suspension only what is left is slept. */
  async sleep(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new InvalidArgumentError("ctx.sleep needs a non-negative number of ms");
    await this.operate("sleep", true, (base) => ({
      case: "wait",
      value: { ...base, condition: { case: "sleep", value: { wake: { case: "duration", value: timeout(ms)! } } } },
    }));
  }

  /** Sleeps durably until `when`. */
  async sleepUntil(when: Date): Promise<void> {
    if (Number.isNaN(when.getTime())) throw new InvalidArgumentError("ctx.sleepUntil needs a valid Date");
    await this.operate("sleep", true, (base) => ({
      case: "wait",
      value: { ...base, condition: { case: "sleep", value: { wake: { case: "until", value: timestampFromDate(when) } } } },
    }));
  }

  /**
   * Takes the oldest unread message of `topic` (default topic: "") sent to this workflow,
   * waiting up to `timeoutMs` (default: for ever). Resolves with the message, or
   * undefined on timeout. Each message is received once.
   */
  async recv<T = unknown>(topic = "", options: { timeoutMs?: number } = {}): Promise<T | undefined> {
    checkTimeout(options.timeoutMs);
    const outcome = await this.operate("recv", true, (base) => ({
      case: "wait",
      value: { ...base, condition: { case: "recv", value: { topic, timeout: timeout(options.timeoutMs) } } },
    }));
    return outcome.timedOut ? undefined : (outcome.value as T);
  }

  /** Sends a message to a workflow's mailbox, exactly once. Rejects with
   * WorkflowNotFoundError or WorkflowFinishedError (recorded: a replay rejects again). */
  async send(workflowId: string, message: unknown, options: SendOptions = {}): Promise<void> {
    checkName(workflowId, "a workflow ID");
    const payload = encode(message, `the message to workflow '${workflowId}'`, this.ex.maxPayloadBytes);
    await this.operate("send", false, (base) => ({
      case: "send",
      value: {
        ...base,
        destinationId: workflowId,
        topic: options.topic ?? "",
        message: payload,
        idempotencyKey: options.idempotencyKey ?? "",
      },
    }));
  }

  /** Sets one of this workflow's events (the latest value wins). */
  async setEvent(key: string, value: unknown): Promise<void> {
    checkName(key, "an event key");
    const payload = encode(value, `the value of event '${key}'`, this.ex.maxPayloadBytes);
    await this.operate("set_event", false, (base) => ({ case: "setEvent", value: { ...base, key, value: payload } }));
  }

  /** The value of a workflow's event, waiting up to `timeoutMs` (default 60 s) for it to
   * be set; undefined if it was not. Recorded: a replay returns the same value. */
  async getEvent<T = unknown>(workflowId: string, key: string, options: { timeoutMs?: number } = {}): Promise<T | undefined> {
    checkName(workflowId, "a workflow ID");
    checkName(key, "an event key");
    checkTimeout(options.timeoutMs);
    const outcome = await this.operate("get_event", true, (base) => ({
      case: "wait",
      value: {
        ...base,
        condition: { case: "getEvent", value: { workflowId, key, timeout: timeout(options.timeoutMs ?? 60_000) } },
      },
    }));
    return outcome.timedOut ? undefined : (outcome.value as T);
  }

  // --- child workflows -----------------------------------------------------------------------

  /** Starts a child workflow by name (any worker serving it runs it, in any language). */
  startChild<I, O>(workflow: WorkflowRef<I, O>, input: I, options?: ChildOptions): Promise<ChildHandle<O>>;
  startChild<O = unknown>(workflow: string, input?: unknown, options?: ChildOptions): Promise<ChildHandle<O>>;
  startChild(
    workflow: string | WorkflowRef<unknown, unknown>,
    input?: unknown,
    options: ChildOptions = {},
  ): Promise<ChildHandle<unknown>> {
    const name = typeof workflow === "string" ? workflow : workflow.name;
    checkName(name, "a workflow name");
    const stepId = this.take(`ctx.startChild('${name}')`);
    return this.start(stepId, name, input, options);
  }

  /** Starts a child and waits for its output; takes both step IDs now, at the call. */
  callChild<I, O>(workflow: WorkflowRef<I, O>, input: I, options?: ChildOptions): Promise<O>;
  callChild<O = unknown>(workflow: string, input?: unknown, options?: ChildOptions): Promise<O>;
  async callChild(
    workflow: string | WorkflowRef<unknown, unknown>,
    input?: unknown,
    options: ChildOptions = {},
  ): Promise<unknown> {
    const name = typeof workflow === "string" ? workflow : workflow.name;
    checkName(name, "a workflow name");
    const startId = this.take(`ctx.callChild('${name}')`);
    const awaitId = this.own.nextStepId();
    const handle = await this.start(startId, name, input, options);
    return await this.awaitWith(awaitId, handle.workflowId, undefined);
  }

  private async start(stepId: string, name: string, input: unknown, options: ChildOptions): Promise<ChildHandle<unknown>> {
    const childId = options.workflowId ?? `${this.ex.workflowId}/${stepId}`;
    const args = input === undefined ? [] : [input];
    const payload = encodeInput(args, {}, `the input of workflow '${name}'`, this.ex.maxPayloadBytes);
    const outcome = await this.ex.operate(stepId, RESERVED + "start_child", false, () => ({
      case: "startChild",
      value: { workflowId: this.ex.workflowId, epoch: this.ex.epoch, stepId, childWorkflowId: childId, workflowName: name, input: payload },
    }));
    // The recorded output is the child's ID (a fork may have copied another's start).
    const recordedId = typeof outcome.value === "string" ? outcome.value : childId;
    return new ChildHandle(this, recordedId);
  }

  /** Waits durably for any workflow (not this one) to finish: its output, or its error. */
  awaitWorkflow<O = unknown>(workflowId: string, options: { timeoutMs?: number } = {}): Promise<O> {
    checkName(workflowId, "a workflow ID");
    checkTimeout(options.timeoutMs);
    return this.awaitWith(this.take("ctx.awaitWorkflow"), workflowId, options.timeoutMs) as Promise<O>;
  }

  private async awaitWith(stepId: string, workflowId: string, timeoutMs: number | undefined): Promise<unknown> {
    const outcome = await this.ex.operate(stepId, RESERVED + "await_workflow", true, () => ({
      case: "wait",
      value: {
        workflowId: this.ex.workflowId,
        epoch: this.ex.epoch,
        stepId,
        condition: { case: "workflow", value: { workflowId, timeout: timeout(timeoutMs) } },
      },
    }));
    if (outcome.timedOut) throw new ResultTimeoutError(`workflow '${workflowId}' did not finish within ${timeoutMs} ms`);
    return outcome.value;
  }

  // --- deterministic helpers (recorded as steps under reserved names) --------------------------

  private helper<T>(name: string, fn: () => T): Promise<T> {
    return this.ex.runStep(this.take(`ctx.${name.slice(RESERVED.length)}`), name, fn, {}, Retry.NONE) as Promise<T>;
  }

  /** The time, recorded ("stepline.now"): a replay sees the same. */
  async now(): Promise<Date> {
    return new Date(await this.helper(RESERVED + "now", () => new Date().toISOString()));
  }

  /** A float in [0, 1), recorded ("stepline.random"). */
  random(): Promise<number> {
    return this.helper(RESERVED + "random", () => Math.random());
  }

  /** A random UUID, recorded ("stepline.uuid4"). */
  uuid(): Promise<string> {
    return this.helper(RESERVED + "uuid4", () => randomUUID());
  }
}

function checkName(value: unknown, what: string): void {
  if (typeof value !== "string" || value.length === 0 || [...value].length > 255 || /\p{Cc}/u.test(value)) {
    throw new InvalidArgumentError(`${what} must be a string of 1 to 255 characters without control characters`);
  }
}

function checkTimeout(ms: number | undefined): void {
  if (ms !== undefined && !(ms >= 0)) throw new InvalidArgumentError("timeoutMs must be a non-negative number");
}
