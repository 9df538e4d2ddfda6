/**
 * The worker's session with the coordinator: one Connect stream at a time, kept open.
 *
 * It registers (with what the worker still holds and everything not yet acknowledged),
 * reconnects with jittered exponential backoff when the stream breaks, sends a heartbeat
 * every `heartbeat_interval_ms`, and keeps the lease deadline: how long this worker may
 * start step bodies without hearing from the coordinator, counted from when the last
 * acknowledged heartbeat was *sent*. Everything queued in one turn of the event loop
 * leaves as one frame (split only to stay within the coordinator's message limit).
 */

import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client as RpcClient, type Transport } from "@connectrpc/connect";
import type { Limits } from "../gen/stepline/v1/common_pb.js";
import {
  WorkerEventSchema,
  WorkerFrameSchema,
  WorkerService,
  type CoordinatorEvent,
  type WorkerEvent,
  type WorkerFrame,
} from "../gen/stepline/v1/worker_pb.js";
import type { Logger } from "../log.js";
import { translate } from "../transport.js";
import { sent } from "./waits.js";

/** Errors on which reconnecting cannot help while nothing changes on the coordinator. */
const FATAL_CODES = new Set([Code.Unauthenticated, Code.InvalidArgument, Code.FailedPrecondition]);

/** What the session needs from the worker. */
export interface SessionHooks {
  /** Register and everything to resend, first on every stream. */
  opening(): WorkerEvent[];
  /** The events of one frame from the coordinator, in order. */
  handle(events: CoordinatorEvent[]): void;
}

/** An async iterable of frames that the stream reads from. */
class FrameQueue implements AsyncIterable<WorkerFrame> {
  private items: WorkerFrame[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(frame: WorkerFrame): void {
    if (this.closed) return;
    this.items.push(frame);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WorkerFrame> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) {
        yield next;
      } else if (this.closed) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    }
  }
}

/** Splits events into frames whose encoded size stays below `maxBytes`. A wait goes as
 * what is left of it `now` (see waits.ts): frames are built right before they are written. */
export function frames(events: WorkerEvent[], maxBytes: number, now: number = performance.now()): WorkerFrame[] {
  const budget = Math.max(maxBytes - 1024, 1024);
  const out: WorkerFrame[] = [];
  let batch: WorkerEvent[] = [];
  let size = 0;
  for (const queued of events) {
    const ev = sent(queued, now);
    const n = toBinary(WorkerEventSchema, ev).length + 6;
    if (batch.length > 0 && size + n > budget) {
      out.push(create(WorkerFrameSchema, { events: batch }));
      batch = [];
      size = 0;
    }
    batch.push(ev);
    size += n;
  }
  if (batch.length > 0) out.push(create(WorkerFrameSchema, { events: batch }));
  return out;
}

/** Drops the StepStart of a step whose result leaves in the same frame (it says all). */
function withoutCoveredStarts(events: WorkerEvent[]): WorkerEvent[] {
  const finished = new Set<string>();
  for (const e of events) {
    if (e.kind.case === "stepResult") finished.add(`${e.kind.value.workflowId}\u0000${e.kind.value.stepId}`);
  }
  if (finished.size === 0) return events;
  return events.filter(
    (e) => e.kind.case !== "stepStart" || !finished.has(`${e.kind.value.workflowId}\u0000${e.kind.value.stepId}`),
  );
}

export class Session {
  limits: Limits | undefined;
  /** Set when the worker drains: no step body may start any more. */
  draining = false;
  /** Resolves once the first stream registered; rejects if the coordinator refused. */
  readonly registered: Promise<void>;

  private readonly rpc: RpcClient<typeof WorkerService>;
  private resolveRegistered!: () => void;
  private rejectRegistered!: (err: unknown) => void;
  private everRegistered = false;
  private outbox: WorkerEvent[] = [];
  private flushScheduled = false;
  private current: FrameQueue | undefined;
  private abort: AbortController | undefined;
  private leaseMs = 3000;
  private heartbeatMs = 1000;
  private leaseDeadline = 0;
  private leaseWaiters: (() => void)[] = [];
  private heartbeatsSent = new Map<bigint, number>();
  private sequence = 0n;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private loop: Promise<void> | undefined;

  constructor(
    transport: Transport,
    private readonly hooks: SessionHooks,
    private readonly log: Logger,
    readonly workerId: string,
  ) {
    this.rpc = createClient(WorkerService, transport);
    this.registered = new Promise<void>((resolve, reject) => {
      this.resolveRegistered = resolve;
      this.rejectRegistered = reject;
    });
    this.registered.catch(() => undefined); // whoever starts the worker sees it
  }

  start(): void {
    this.loop = this.maintain();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.current?.close();
    this.abort?.abort();
    await this.loop;
  }

  /** Queues an event; what is queued in one event-loop turn leaves as one frame. */
  send(event: WorkerEvent): void {
    this.outbox.push(event);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.current === undefined || this.outbox.length === 0) return;
    const events = withoutCoveredStarts(this.outbox);
    this.outbox = [];
    for (const frame of frames(events, this.maxMessageBytes())) this.current.push(frame);
  }

  private maxMessageBytes(): number {
    return Number(this.limits?.maxMessageBytes ?? 4n << 20n);
  }

  // --- the lease ----------------------------------------------------------------------

  /** Whether a step body may start right now. */
  leaseCurrent(): boolean {
    return !this.draining && performance.now() < this.leaseDeadline;
  }

  /** Resolves at once while the lease is current; otherwise once it is renewed. */
  async leaseHeld(): Promise<void> {
    while (!this.leaseCurrent()) {
      await new Promise<void>((resolve) => this.leaseWaiters.push(resolve));
    }
  }

  private renewLease(sentAt: number): void {
    const deadline = sentAt + this.leaseMs;
    if (deadline > this.leaseDeadline) {
      this.leaseDeadline = deadline;
      const waiters = this.leaseWaiters;
      this.leaseWaiters = [];
      for (const w of waiters) w();
    }
  }

  heartbeatAcked(sequence: bigint): void {
    const sentAt = this.heartbeatsSent.get(sequence);
    if (sentAt !== undefined) this.renewLease(sentAt);
    for (const s of this.heartbeatsSent.keys()) if (s <= sequence) this.heartbeatsSent.delete(s);
  }

  // --- the stream ---------------------------------------------------------------------

  private async maintain(): Promise<void> {
    let delay = 50;
    while (!this.stopping) {
      try {
        if (await this.session()) delay = 50;
      } catch (err) {
        if (err instanceof ConnectError && FATAL_CODES.has(err.code) && !this.everRegistered) {
          this.rejectRegistered(translate(err));
          return;
        }
        if (!this.stopping) this.log("warn", `worker ${this.workerId}: stream ended: ${String(err)}`);
      } finally {
        this.current?.close();
        this.current = undefined;
        this.abort?.abort();
        clearInterval(this.heartbeatTimer);
      }
      if (this.stopping) return;
      await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
      delay = Math.min(delay * 2, 2000);
    }
  }

  /** One stream, from Register to its end. Returns whether it registered. */
  private async session(): Promise<boolean> {
    const queue = new FrameQueue();
    const abort = new AbortController();
    this.abort = abort;
    // Register, then everything not acknowledged: the coordinator re-attaches what is
    // still ours and takes these results, and refuses (fenced by epoch) the others.
    // What was queued for the broken stream is covered by that.
    this.outbox = [];
    const sentAt = performance.now();
    for (const frame of frames(this.hooks.opening(), this.maxMessageBytes())) queue.push(frame);
    const responses = this.rpc.connect(queue, { signal: abort.signal })[Symbol.asyncIterator]();
    const first = await responses.next();
    if (first.done === true) return false;
    const [head, ...rest] = first.value.events;
    if (head?.kind.case !== "registered") return false;
    const registered = head.kind.value;
    this.leaseMs = registered.leaseMs;
    this.heartbeatMs = registered.heartbeatIntervalMs;
    this.limits = registered.limits;
    this.renewLease(sentAt);
    this.current = queue;
    this.everRegistered = true;
    this.resolveRegistered();
    this.log("info", `worker ${this.workerId} registered (session ${registered.sessionId.slice(0, 8)})`);
    this.heartbeatTimer = setInterval(() => this.heartbeat(), Math.max(this.heartbeatMs, 10));
    this.hooks.handle(rest);
    for (;;) {
      const next = await responses.next();
      if (next.done === true) return true;
      this.hooks.handle(next.value.events);
    }
  }

  private heartbeat(): void {
    this.sequence += 1n;
    this.heartbeatsSent.set(this.sequence, performance.now());
    this.send(create(WorkerEventSchema, { kind: { case: "heartbeat", value: { sequence: this.sequence } } }));
  }
}
