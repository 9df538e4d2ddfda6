/**
 * A durable wait's duration (sleep) or timeout (recv, getEvent, awaitWorkflow) counts
 * from the workflow's call: when its Wait is encoded for the stream, what is sent is what
 * is left of it then, never less than zero (docs/protocol.md, "Durable operations"). A
 * Wait that sat in this process first (behind a busy event loop, a lost connection: it
 * is resent after the reconnect) still ends when the workflow asked, not that much later.
 * A sleep until a given time is sent as it is.
 *
 * The event kept for resending keeps the whole duration; each encoding sends a copy.
 */

import { clone, create } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import { WaitSchema, WorkerEventSchema, type WorkerEvent } from "../gen/stepline/v1/worker_pb.js";

/** When the workflow called each wait (performance.now()); what sent() counts from. */
const CALLED = new WeakMap<WorkerEvent, number>();

/** Records that the workflow called the wait `ev` at `at` (default: now). */
export function called(ev: WorkerEvent, at: number = performance.now()): WorkerEvent {
  CALLED.set(ev, at);
  return ev;
}

/** `ev` as it is to be encoded `now`: a wait recorded by called() is a copy with what is
 * left of its duration or timeout; anything else is `ev` itself. */
export function sent(ev: WorkerEvent, now: number = performance.now()): WorkerEvent {
  const at = CALLED.get(ev);
  if (at === undefined || ev.kind.case !== "wait") return ev;
  const c = ev.kind.value.condition;
  const whole = c.case === "sleep" ? (c.value.wake.case === "duration" ? c.value.wake.value : undefined) : c.value?.timeout;
  if (whole === undefined) return ev;
  const wait = clone(WaitSchema, ev.kind.value);
  const rest = left(whole, now - at);
  if (wait.condition.case === "sleep") wait.condition.value.wake = { case: "duration", value: rest };
  else if (wait.condition.case !== undefined) wait.condition.value.timeout = rest;
  return create(WorkerEventSchema, { kind: { case: "wait", value: wait } });
}

/** What is left of `whole` once `elapsedMs` have passed, never negative. */
function left(whole: Duration, elapsedMs: number): Duration {
  const ms = Math.max(0, Number(whole.seconds) * 1000 + whole.nanos / 1e6 - elapsedMs);
  let seconds = Math.floor(ms / 1000);
  let nanos = Math.round((ms - seconds * 1000) * 1e6);
  if (nanos >= 1e9) {
    seconds += 1;
    nanos -= 1e9;
  }
  return create(DurationSchema, { seconds: BigInt(seconds), nanos });
}
