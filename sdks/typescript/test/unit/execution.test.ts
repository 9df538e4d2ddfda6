/** Executions against an in-memory coordinator: the step-ID rule, replay, non-determinism,
 * durable waits counted from the call. */

import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { PayloadSchema, StepStatus } from "../../src/gen/stepline/v1/common_pb.js";
import { AssignmentSchema, RecordedStepSchema, type RecordedStep, type WorkerEvent } from "../../src/gen/stepline/v1/worker_pb.js";
import { decode } from "../../src/serde.js";
import { WorkflowContext } from "../../src/worker/context.js";
import { Execution, type Link } from "../../src/worker/execution.js";
import { frames } from "../../src/worker/session.js";

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Acknowledges every step result after a random delay, so steps finish in any order. */
class FakeCoordinator implements Link {
  readonly maxPayloadBytes = undefined;
  readonly suspendAfterMs = undefined;
  readonly log = () => undefined;
  readonly sent: WorkerEvent[] = [];
  ex: Execution | undefined;

  send(ev: WorkerEvent): void {
    this.sent.push(ev);
    if (ev.kind.case === "stepResult") {
      const id = ev.kind.value.stepId;
      setTimeout(() => this.ex?.stepAcked(id), Math.random() * 5);
    }
  }
  leaseCurrent(): boolean {
    return true;
  }
  leaseHeld(): Promise<void> {
    return Promise.resolve();
  }
  progressed(): void {}
  suspended(): void {}

  /** What it recorded, as an Assignment would carry it. */
  recorded(): RecordedStep[] {
    return this.sent.flatMap((ev) =>
      ev.kind.case === "stepResult"
        ? [
            create(RecordedStepSchema, {
              stepId: ev.kind.value.stepId,
              stepName: ev.kind.value.stepName,
              status: ev.kind.value.outcome.case === "output" ? StepStatus.SUCCEEDED : StepStatus.FAILED,
              outcome: ev.kind.value.outcome,
              attempts: ev.kind.value.attempt,
            }),
          ]
        : [],
    );
  }

  kinds(): string[] {
    return this.sent.map((e) => e.kind.case ?? "");
  }

  result(): { output?: unknown; errorType?: string; message?: string } {
    const ev = this.sent.find((e) => e.kind.case === "workflowResult");
    assert.ok(ev?.kind.case === "workflowResult", "no workflow result");
    const outcome = ev.kind.value.outcome;
    if (outcome.case === "output") return { output: decode(outcome.value) };
    assert.ok(outcome.case === "error");
    return { errorType: outcome.value.type, message: outcome.value.message };
  }
}

type Fn = (ctx: WorkflowContext, input: unknown) => Promise<unknown>;

async function run(fn: Fn, steps: RecordedStep[] = []): Promise<FakeCoordinator> {
  const input = create(PayloadSchema, { data: new TextEncoder().encode('{"args":[],"kwargs":{}}'), encoding: "json" });
  const assignment = create(AssignmentSchema, { workflowId: "w", workflowName: "wf", epoch: 1n, input, steps });
  const coordinator = new FakeCoordinator();
  const ex = new Execution(assignment, coordinator);
  coordinator.ex = ex;
  await ex.run((value, args) => fn(new WorkflowContext(ex, ex.root, args), value));
  return coordinator;
}

/** Promise.all of helpers that each await several steps, finishing in random order. */
const helpers: Fn = async (ctx) => {
  const first = await ctx.step("first", () => "f");
  const parts = await Promise.all(
    [0, 1, 2, 3].map((i) =>
      ctx.scope(async (c) => {
        const a = await c.step("a", async () => {
          await pause(Math.random() * 5);
          return i;
        });
        const [b, d] = await Promise.all([c.step("b", () => a * 10), c.step("d", () => a * 100)]);
        return [a, b, d];
      }),
    ),
  );
  return { first, parts, last: await ctx.step("last", () => "l") };
};

test("step IDs do not depend on the order steps finish in, and a replay runs nothing", async () => {
  const firstRun = await run(helpers);
  const expected = { first: "f", parts: [0, 1, 2, 3].map((i) => [i, 10 * i, 100 * i]), last: "l" };
  assert.deepEqual(firstRun.result(), { output: expected });
  const ids = firstRun.recorded().map((s) => s.stepId).sort();
  assert.deepEqual(ids, ["1", "2", ...[1, 2, 3, 4].flatMap((t) => [`t${t}/1`, `t${t}/2`, `t${t}/3`])].sort());
  for (let i = 0; i < 5; i++) assert.deepEqual((await run(helpers)).recorded().map((s) => s.stepId).sort(), ids);

  const replay = await run(helpers, firstRun.recorded());
  assert.deepEqual(replay.kinds(), ["workflowResult"]);
  assert.deepEqual(replay.result(), { output: expected });

  // A partial history (as after a crash): the rest runs, under the same IDs.
  const partial = firstRun.recorded().filter((s) => s.stepId.endsWith("/1") || s.stepId === "1");
  const resumed = await run(helpers, partial);
  assert.deepEqual(resumed.result(), { output: expected });
  const rerun = resumed.recorded().map((s) => s.stepId);
  assert.ok(rerun.every((id) => !partial.some((p) => p.stepId === id)));
});

test("a recorded step ID under another name is a non-determinism error, even if caught", async () => {
  const history = (await run(async (ctx) => ctx.step("original", () => 1))).recorded();
  const changed = await run(async (ctx) => {
    try {
      await ctx.step("renamed", () => 2);
    } catch {
      return "caught";
    }
  }, history);
  const result = changed.result();
  assert.equal(result.errorType, "stepline.NonDeterminismError");
  assert.match(result.message ?? "", /step '1' was recorded as 'original' but the code now calls 'renamed'/);
  assert.deepEqual(changed.kinds(), ["workflowResult"]);
});

test("recorded failures are thrown again as the same StepFailedError", async () => {
  const fails: Fn = async (ctx) => {
    try {
      await ctx.step("boom", () => {
        throw new RangeError("out");
      });
    } catch (err) {
      return [(err as Error).name, (err as { errorType?: string }).errorType];
    }
  };
  const firstRun = await run(fails);
  assert.deepEqual(firstRun.result(), { output: ["StepFailedError", "RangeError"] });
  assert.deepEqual((await run(fails, firstRun.recorded())).result(), { output: ["StepFailedError", "RangeError"] });
});

test("a context used outside its own scope, or inside a step body, fails loudly", async () => {
  const outer = await run(async (ctx) => ctx.scope(async () => ctx.step("s", () => 1)));
  assert.equal(outer.result().errorType, "stepline.NotInWorkflowError");
  const inBody = await run(async (ctx) => ctx.step("s", () => ctx.step("t", () => 1)));
  assert.equal(inBody.result().errorType, "stepline.NotInWorkflowError");
  const reserved = await run(async (ctx) => ctx.step("stepline.mine", () => 1));
  assert.equal(reserved.result().errorType, "stepline.InvalidArgumentError");
});

test("retries run attempts until one succeeds; the last error is recorded", async () => {
  const flaky = await run(async (ctx) =>
    ctx.step("f", (s) => {
      if (s.attempt < 3) throw new Error(`attempt ${s.attempt}`);
      return s.attempt;
    }, { retries: { maxAttempts: 3, initialIntervalMs: 1 } }),
  );
  assert.deepEqual(flaky.result(), { output: 3 });
  assert.equal(flaky.kinds().filter((k) => k === "stepStart").length, 3);
  const timedOut = await run(async (ctx) => ctx.step("slow", () => pause(200), { timeoutMs: 10 }));
  assert.equal(timedOut.result().errorType, "stepline.StepTimeoutError");
});

test("a durable wait counts from the workflow's call: framed later, it is sent with what is left", async () => {
  const coordinator = new FakeCoordinator();
  const input = create(PayloadSchema, { data: new TextEncoder().encode('{"args":[],"kwargs":{}}'), encoding: "json" });
  const ex = new Execution(create(AssignmentSchema, { workflowId: "w", workflowName: "wf", epoch: 1n, input }), coordinator);
  coordinator.ex = ex;
  void ex.run((_value, args) => {
    const ctx = new WorkflowContext(ex, ex.root, args);
    return Promise.all([ctx.sleep(2000), ctx.recv("t", { timeoutMs: 10_000 }), ctx.sleepUntil(new Date(0))]);
  });
  await pause(5);
  const waits = coordinator.sent.filter((e) => e.kind.case === "wait");
  assert.equal(waits.length, 3);
  // Encoded 1.5 s after the calls (as if the Waits had sat in a busy worker).
  const [sleep, recv, until] = frames(waits, 1 << 20, performance.now() + 1500)[0]!.events.map((e) =>
    e.kind.case === "wait" ? e.kind.value.condition : undefined,
  );
  assert.ok(sleep?.case === "sleep" && sleep.value.wake.case === "duration");
  const sleepLeft = durationMs(sleep.value.wake.value);
  assert.ok(sleepLeft > 300 && sleepLeft <= 500, `sleep left ${sleepLeft} ms`);
  assert.ok(recv?.case === "recv" && recv.value.timeout !== undefined);
  const recvLeft = durationMs(recv.value.timeout);
  assert.ok(recvLeft > 8300 && recvLeft <= 8500, `recv left ${recvLeft} ms`);
  assert.ok(until?.case === "sleep" && until.value.wake.case === "until");
  assert.equal(until.value.wake.value.seconds, 0n);
  ex.stop();
});
