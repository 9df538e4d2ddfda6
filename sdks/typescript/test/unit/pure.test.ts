import assert from "node:assert/strict";
import { test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PayloadSchema } from "../../src/gen/stepline/v1/common_pb.js";
import { WaitSchema, WorkerEventSchema, type Wait, type WorkerEvent } from "../../src/gen/stepline/v1/worker_pb.js";
import {
  InvalidArgumentError,
  PayloadTooLargeError,
  SerializationError,
  StepFailedError,
  WorkflowNotFoundError,
} from "../../src/errors.js";
import { decode, decodeArgs, encode, errorInfo, rebuild, typeName, workflowInput } from "../../src/serde.js";
import { baseUrl } from "../../src/transport.js";
import { Retry } from "../../src/worker/retry.js";
import { Scope } from "../../src/worker/scope.js";
import { frames } from "../../src/worker/session.js";
import { called } from "../../src/worker/waits.js";

const json = (text: string) => create(PayloadSchema, { data: new TextEncoder().encode(text), encoding: "json" });

test("scopes number steps and tasks separately, with Python's ID shape", () => {
  const root = new Scope();
  assert.equal(root.nextStepId(), "1");
  const t1 = root.child();
  const t2 = root.child();
  assert.equal(root.nextStepId(), "2");
  assert.equal(t2.nextStepId(), "t2/1");
  assert.equal(t1.nextStepId(), "t1/1");
  assert.equal(t1.nextStepId(), "t1/2");
  assert.equal(t2.child().peekStepId(), "t2/t1/1");
  const deep = t2.child();
  assert.equal(deep.nextStepId(), "t2/t2/1");
});

test("values are JSON; undefined is null; too large and unencodable values are refused", () => {
  assert.equal(new TextDecoder().decode(encode(undefined, "x").data), "null");
  assert.deepEqual(decode(encode({ a: [1, "ü"] }, "x")), { a: [1, "ü"] });
  assert.throws(() => encode(1n, "the value"), SerializationError);
  const circular: Record<string, unknown> = {};
  circular["self"] = circular;
  assert.throws(() => encode(circular, "the value"), /cannot be encoded as JSON/);
  assert.throws(() => encode("x".repeat(100), "the value", 10), PayloadTooLargeError);
  assert.throws(() => decode(json("{nope")), SerializationError);
  assert.throws(() => decode(create(PayloadSchema, { data: new Uint8Array([1]), encoding: "yaml" })), /encoding 'yaml'/);
});

test("workflow inputs are read as the Python SDK writes them", () => {
  assert.deepEqual(decodeArgs(json('{"args":[1],"kwargs":{}}')), { args: [1], kwargs: {} });
  assert.deepEqual(decodeArgs(json("[1,2]")), { args: [1, 2], kwargs: {} });
  assert.deepEqual(decodeArgs(json("null")), { args: [], kwargs: {} });
  assert.throws(() => decodeArgs(json('{"x":1}')), SerializationError);
  assert.equal(workflowInput({ args: ["a"], kwargs: {} }, "w"), "a");
  assert.deepEqual(workflowInput({ args: [], kwargs: { k: 1 } }, "w"), { k: 1 });
  assert.equal(workflowInput({ args: [], kwargs: {} }, "w"), undefined);
  assert.throws(() => workflowInput({ args: [1, 2], kwargs: {} }, "w"), /takes one input/);
});

test("errors are recorded with their type and rebuilt the same on every run", () => {
  const info = errorInfo(new RangeError("too far\u0000"));
  assert.equal(info.type, "RangeError");
  assert.equal(info.message, "too far\\u0000");
  assert.deepEqual(decode(info.details), ["too far\\u0000"]);
  const rebuilt = rebuild(info);
  assert.ok(rebuilt instanceof StepFailedError);
  assert.equal(rebuilt.errorType, "RangeError");
  // A rebuilt error re-thrown by a workflow is recorded as the original.
  assert.equal(errorInfo(rebuilt).type, "RangeError");
  assert.equal(typeName(new WorkflowNotFoundError("x")), "stepline.WorkflowNotFoundError");
  assert.ok(rebuild(errorInfo(new WorkflowNotFoundError("gone"))) instanceof WorkflowNotFoundError);
  assert.equal(errorInfo("a string").message, "a string");
});

test("retry policies", () => {
  const r = new Retry({ maxAttempts: 4, initialIntervalMs: 100, backoffFactor: 3, maxIntervalMs: 500 });
  assert.deepEqual([1, 2, 3].map((a) => r.delay(a)), [100, 300, 500]);
  assert.equal(r.retries(new Error(), 3), true);
  assert.equal(r.retries(new Error(), 4), false);
  const picky = new Retry({ nonRetryable: (e) => e instanceof TypeError });
  assert.equal(picky.retries(new TypeError(), 1), false);
  assert.equal(Retry.NONE.retries(new Error(), 1), false);
  assert.throws(() => new Retry({ maxAttempts: 0 }), InvalidArgumentError);
  assert.throws(() => new Retry({ backoffFactor: 0.5 }), InvalidArgumentError);
});

test("frames stay below the message limit", () => {
  const big = (i: number) =>
    create(WorkerEventSchema, {
      kind: { case: "stepResult", value: { workflowId: "w", stepId: String(i), outcome: { case: "output", value: json(`"${"x".repeat(1000)}"`) } } },
    });
  const events = Array.from({ length: 10 }, (_, i) => big(i));
  const out = frames(events, 4096);
  assert.ok(out.length >= 3);
  assert.equal(out.flatMap((f) => f.events).length, 10);
  assert.equal(frames(events, 4 << 20).length, 1);
});

type Condition = MessageInitShape<typeof WaitSchema>["condition"];
const waitOn = (condition: Condition) =>
  create(WorkerEventSchema, { kind: { case: "wait", value: { workflowId: "w", stepId: "1", condition } } });
const sleepFor = (ms: number) => waitOn({ case: "sleep", value: { wake: { case: "duration", value: durationFromMs(ms) } } });

/** The Wait as it leaves in a frame. */
function sentWait(ev: WorkerEvent): Wait {
  const out = frames([ev], 1 << 20)[0]!.events[0]!;
  assert.ok(out.kind.case === "wait");
  return out.kind.value;
}

function sleepMs(w: Wait): number {
  assert.ok(w.condition.case === "sleep" && w.condition.value.wake.case === "duration");
  const d = w.condition.value.wake.value;
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}

test("a wait is sent with what is left of it since the workflow called it", () => {
  const ev = called(sleepFor(2000), performance.now() - 1500);
  const left = sleepMs(sentWait(ev));
  assert.ok(left > 300 && left <= 500, `left ${left} ms`);
  // The event kept for a resend keeps its whole duration; a resend counts from the call too.
  assert.ok(ev.kind.case === "wait");
  assert.equal(sleepMs(ev.kind.value), 2000);
  assert.ok(sleepMs(sentWait(ev)) <= left);

  const recv = called(waitOn({ case: "recv", value: { timeout: durationFromMs(10_000) } }), performance.now() - 4000);
  const timeout = sentWait(recv).condition;
  assert.ok(timeout.case === "recv" && timeout.value.timeout !== undefined);
  assert.ok(durationMs(timeout.value.timeout) > 5800 && durationMs(timeout.value.timeout) <= 6000);
});

test("a wait older than its duration is sent as zero; until and no timeout stay as they are", () => {
  assert.equal(sleepMs(sentWait(called(sleepFor(1000), performance.now() - 3000))), 0);
  const fresh = sleepMs(sentWait(called(sleepFor(2000))));
  assert.ok(fresh > 1990 && fresh <= 2000);
  assert.equal(sleepMs(sentWait(sleepFor(2000))), 2000); // no call time: as it is

  const when = timestampFromDate(new Date("2030-01-01T00:00:00Z"));
  const until = called(waitOn({ case: "sleep", value: { wake: { case: "until", value: when } } }), performance.now() - 5000);
  const w = sentWait(until).condition;
  assert.ok(w.case === "sleep" && w.value.wake.case === "until");
  assert.equal(w.value.wake.value.seconds, when.seconds);
  const forever = called(waitOn({ case: "recv", value: { topic: "t" } }), performance.now() - 5000);
  const r = sentWait(forever).condition;
  assert.ok(r.case === "recv" && r.value.timeout === undefined);
});

test("addresses", () => {
  assert.equal(baseUrl("127.0.0.1:7420"), "http://127.0.0.1:7420");
  assert.equal(baseUrl("https://x.example:443"), "https://x.example:443");
  assert.throws(() => baseUrl("no port"), InvalidArgumentError);
});
