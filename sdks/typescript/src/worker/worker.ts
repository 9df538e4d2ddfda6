/**
 * The Worker: what it serves, its lifecycle, and the executions it runs with what the
 * coordinator says about them (each kind of coordinator event has one handler here).
 * The stream itself is session.ts's; one execution is execution.ts's. The worker holds
 * nothing recovery needs: everything it learns comes with an Assignment.
 */

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { ProtocolVersion } from "../gen/stepline/v1/common_pb.js";
import {
  AbandonReason,
  type Abandon,
  type Assignment,
  type CoordinatorEvent,
  type WorkerEvent,
} from "../gen/stepline/v1/worker_pb.js";
import type { WorkflowRef } from "../client.js";
import { InvalidArgumentError } from "../errors.js";
import { stderrLogger, type Logger } from "../log.js";
import { transport, type ConnectionOptions } from "../transport.js";
import { WorkflowContext } from "./context.js";
import { event, Execution, type Link } from "./execution.js";
import { Session } from "./session.js";

export const SDK_VERSION = "0.1.0";

/** A workflow function: the context and the workflow's one input (JSON). */
export type WorkflowFunction<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>;

export interface WorkerOptions extends ConnectionOptions {
  /** A stable ID, unique among connected workers; default STEPLINE_WORKER_ID or
   * "<host>-<pid>-<random>". */
  workerId?: string;
  /** Workflows run at once (those waiting on durable waits only do not count). Default 100. */
  capacity?: number;
  /** Ms a workflow waiting on durable waits only stays in memory before it is suspended
   * (given back to the coordinator until a wait ends). Default 5000; null: never. */
  suspendAfterMs?: number | null;
  /** On stop(), how long running step bodies may take to finish and be acknowledged. */
  shutdownGraceMs?: number;
  /** How long start() waits for the coordinator to accept the worker. Default 30 000. */
  connectTimeoutMs?: number;
  logger?: Logger;
}

export class Worker implements Link {
  readonly workerId: string;
  readonly capacity: number;
  readonly suspendAfterMs: number | undefined;
  readonly log: Logger;
  private readonly definitions = new Map<string, WorkflowFunction<never, unknown>>();
  private readonly executions = new Map<string, Execution>();
  private readonly session: Session;
  private readonly shutdownGraceMs: number;
  private readonly connectTimeoutMs: number;
  private progressWaiters: (() => void)[] = [];
  private started = false;

  constructor(options: WorkerOptions = {}) {
    this.workerId =
      options.workerId ||
      process.env["STEPLINE_WORKER_ID"] ||
      `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.capacity = options.capacity ?? 100;
    if (!Number.isInteger(this.capacity) || this.capacity < 1) throw new InvalidArgumentError("capacity must be an integer of at least 1");
    const suspend = options.suspendAfterMs === undefined ? 5000 : options.suspendAfterMs;
    if (suspend !== null && !(suspend >= 0)) throw new InvalidArgumentError("suspendAfterMs must not be negative");
    this.suspendAfterMs = suspend ?? undefined;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 10_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
    this.log = options.logger ?? stderrLogger();
    this.session = new Session(
      transport(options),
      { opening: () => this.opening(), handle: (events) => this.handle(events) },
      this.log,
      this.workerId,
    );
  }

  /** Serves the workflow `name`; returns a typed ref for `client.start` and `ctx.startChild`. */
  workflow<I = unknown, O = unknown>(name: string, fn: WorkflowFunction<I, O>): WorkflowRef<I, O> {
    if (this.started) throw new InvalidArgumentError("register workflows before start()");
    if (typeof name !== "string" || name.length === 0 || name.length > 255) {
      throw new InvalidArgumentError("a workflow name must be a string of 1 to 255 characters");
    }
    if (typeof fn !== "function") throw new InvalidArgumentError(`workflow '${name}' needs a function`);
    if (this.definitions.has(name)) throw new InvalidArgumentError(`two workflows are named '${name}'`);
    this.definitions.set(name, fn as WorkflowFunction<never, unknown>);
    return { name };
  }

  /** How many executions this worker holds now. */
  get running(): number {
    return this.executions.size;
  }

  /** Connects and registers; rejects if the coordinator refuses (wrong API key, ...) or
   * cannot be reached within connectTimeoutMs. */
  async start(): Promise<void> {
    if (this.definitions.size === 0) throw new InvalidArgumentError("a Worker needs at least one workflow");
    if (this.started) return;
    this.started = true;
    this.session.start();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new InvalidArgumentError(`could not register within ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
    });
    try {
      await Promise.race([this.session.registered, timeout]);
    } catch (err) {
      await this.session.stop();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drains: assigned nothing more, starts no step body, lets running ones finish and be
   * acknowledged (within shutdownGraceMs), then closes the stream. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.session.draining = true;
    this.session.send(event({ case: "drain", value: {} }));
    const deadline = performance.now() + this.shutdownGraceMs;
    while (![...this.executions.values()].every((ex) => ex.settled) && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(deadline - performance.now(), 0));
        this.progressWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await this.session.stop();
    for (const ex of this.executions.values()) ex.stop();
    this.executions.clear();
  }

  /** Serves until SIGINT or SIGTERM, then stops. */
  async runUntilSignal(): Promise<void> {
    await this.start();
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await this.stop();
  }

  // --- the link executions use ----------------------------------------------------------

  get maxPayloadBytes(): number | undefined {
    const max = this.session.limits?.maxPayloadBytes;
    return max === undefined ? undefined : Number(max);
  }

  send(ev: WorkerEvent): void {
    this.session.send(ev);
  }

  leaseCurrent(): boolean {
    return this.session.leaseCurrent();
  }

  leaseHeld(): Promise<void> {
    return this.session.leaseHeld();
  }

  progressed(): void {
    const waiters = this.progressWaiters;
    this.progressWaiters = [];
    for (const w of waiters) w();
  }

  suspended(ex: Execution): void {
    if (this.executions.get(ex.workflowId) === ex) this.executions.delete(ex.workflowId);
    this.progressed();
  }

  // --- for the session ------------------------------------------------------------------

  /** Register with what this worker still runs, then everything not acknowledged. */
  private opening(): WorkerEvent[] {
    const live = [...this.executions.values()].filter((ex) => !ex.stopped);
    const register = event({
      case: "register",
      value: {
        workerId: this.workerId,
        workflowNames: [...this.definitions.keys()],
        capacity: this.capacity,
        language: "typescript",
        sdkVersion: SDK_VERSION,
        protocolVersion: ProtocolVersion.PROTOCOL_VERSION_1,
        held: live.map((ex) => ({ workflowId: ex.workflowId, epoch: ex.epoch })),
      },
    });
    const events = [register, ...live.flatMap((ex) => ex.pendingEvents())];
    if (this.session.draining) events.push(event({ case: "drain", value: {} }));
    return events;
  }

  private handle(events: CoordinatorEvent[]): void {
    for (const ev of events) {
      try {
        this.handleOne(ev);
      } catch (err) {
        this.log("error", `handling ${ev.kind.case ?? "an unknown event"}: ${String(err)}`);
      }
    }
  }

  private current(workflowId: string, epoch: bigint): Execution | undefined {
    const ex = this.executions.get(workflowId);
    return ex !== undefined && ex.epoch === epoch ? ex : undefined;
  }

  private handleOne(ev: CoordinatorEvent): void {
    const k = ev.kind;
    switch (k.case) {
      case "assignment":
        return this.assign(k.value);
      case "stepAck":
        return this.current(k.value.workflowId, k.value.epoch)?.stepAcked(k.value.stepId);
      case "stepDone":
        return this.current(k.value.workflowId, k.value.epoch)?.stepDone(k.value);
      case "workflowAck": {
        const ex = this.current(k.value.workflowId, k.value.epoch);
        if (ex !== undefined) {
          this.executions.delete(ex.workflowId);
          ex.workflowAcked();
          this.progressed();
        }
        return;
      }
      case "abandon":
        return this.abandon(k.value);
      case "rejected": {
        const ex = this.current(k.value.workflowId, k.value.epoch);
        const message = k.value.status?.message ?? "rejected";
        if (ex !== undefined) ex.rejected(k.value.stepId, message);
        else this.log("warn", `coordinator rejected an event of ${k.value.workflowId}: ${message}`);
        return;
      }
      case "heartbeatAck":
        return this.session.heartbeatAcked(k.value.sequence);
      default:
        return; // Registered (taken by the session), StartWorkflowResult, kinds added later
    }
  }

  private abandon(a: Abandon): void {
    const ex = this.current(a.workflowId, a.epoch);
    if (ex === undefined) return;
    this.executions.delete(a.workflowId);
    if (a.reason === AbandonReason.CANCELLED) ex.cancel(a.message);
    else ex.abandon(`${AbandonReason[a.reason] ?? a.reason}: ${a.message}`);
    this.progressed();
  }

  private assign(a: Assignment): void {
    const fn = this.definitions.get(a.workflowName);
    if (fn === undefined) {
      // The coordinator only sends registered names.
      this.log("error", `assigned unknown workflow '${a.workflowName}'; giving it back`);
      this.send(event({ case: "release", value: { workflowId: a.workflowId, epoch: a.epoch } }));
      return;
    }
    this.executions.get(a.workflowId)?.abandon(`reassigned to this worker under epoch ${a.epoch}`);
    const ex = new Execution(a, this);
    this.executions.set(a.workflowId, ex);
    ex.run((input, args) => (fn as WorkflowFunction<unknown, unknown>)(new WorkflowContext(ex, ex.root, args), input)).catch(
      (err: unknown) => this.log("error", `execution of ${a.workflowId} crashed: ${String(err)}`),
    );
  }
}
