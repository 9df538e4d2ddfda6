import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { PayloadSchema } from "../../src/gen/stepline/v1/common_pb.js";
import { WorkerEventSchema } from "../../src/gen/stepline/v1/worker_pb.js";
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

test("addresses", () => {
  assert.equal(baseUrl("127.0.0.1:7420"), "http://127.0.0.1:7420");
  assert.equal(baseUrl("https://x.example:443"), "https://x.example:443");
  assert.throws(() => baseUrl("no port"), InvalidArgumentError);
});
