/**
 * A TypeScript worker process for tests/e2e/test_typescript.py:
 * `node dist/test/programs/worker.js` with STEPLINE_ADDRESS set.
 *
 * Every step body appends one line to the file named by SIDE_EFFECTS before it returns,
 * in the format of tests/e2e/programs/flows.py (workflow ID, step ID, worker name,
 * attempt, start time, what; tab-separated), so that tests count how often bodies ran.
 * STEP_DELAY (seconds) slows step bodies down; VARIANT changes the code between runs.
 */

import { appendFileSync } from "node:fs";
import { Worker, type StepContext, type WorkflowContext } from "../../src/index.js";

function effect(step: StepContext, what: string, started = Date.now()): void {
  const worker = process.env["WORKER_NAME"] ?? String(process.pid);
  const line = [step.workflowId, step.stepId, worker, step.attempt, (started / 1000).toFixed(6), what].join("\t");
  appendFileSync(process.env["SIDE_EFFECTS"] ?? "/dev/null", line + "\n");
}

const delayMs = (): number => Number(process.env["STEP_DELAY"] ?? "0") * 1000;
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A step that records `what` and returns `${what}-done`. */
function record(ctx: WorkflowContext, what: string): Promise<string> {
  return ctx.step("record", async (s) => {
    const started = Date.now();
    await pause(delayMs());
    effect(s, what, started);
    return `${what}-done`;
  });
}

/** A helper that awaits three steps one after another (run concurrently with others). */
async function helper(ctx: WorkflowContext, i: number): Promise<string[]> {
  const out: string[] = [];
  for (let j = 0; j < 3; j++) {
    out.push(
      await ctx.step("jittery", async (s) => {
        await pause(Math.random() * 2 * delayMs());
        effect(s, `${i}.${j}`);
        return `${i}.${j}`;
      }),
    );
  }
  return out;
}

const worker = new Worker({
  address: process.env["STEPLINE_ADDRESS"],
  capacity: Number(process.env["CAPACITY"] ?? "100"),
  suspendAfterMs: process.env["SUSPEND_AFTER"] === "never" ? null : Number(process.env["SUSPEND_AFTER"] ?? "5") * 1000,
});

worker.workflow("ts.greet", async (ctx, name: string) => {
  const greeting = await ctx.step("greet", (s) => {
    effect(s, `greet ${name}`);
    return `hello ${name}`;
  });
  const shout = await ctx.step("shout", () => greeting.toUpperCase());
  return { greeting, shout, workflowId: ctx.workflowId };
});

worker.workflow("ts.fanout", async (ctx, n: number) => {
  // Steps called together take their IDs in call order: "1".."n".
  const squares = await Promise.all(Array.from({ length: n }, (_, i) => ctx.step("square", () => i * i)));
  // Helpers that each await several steps run in scopes of their own: "t1/1", "t2/1", ...
  const helpers = await Promise.all([0, 1, 2].map((i) => ctx.scope((c) => helper(c, i))));
  const nested = await ctx.scope(async (c) =>
    c.concurrently([(d) => d.step("leaf", () => "a"), (d) => d.step("leaf", () => "b")] as const),
  );
  return { squares, helpers, nested };
});

worker.workflow("ts.helpers", async (ctx, tag: string) => {
  const first = await record(ctx, `${tag}-first`);
  const helpers = await Promise.all(Array.from({ length: 4 }, (_, i) => ctx.scope((c) => helper(c, i))));
  const last = await record(ctx, `${tag}-last`);
  return { first, helpers, last };
});

worker.workflow("ts.flaky", async (ctx, failures: number) => {
  return await ctx.step(
    "flaky",
    (s) => {
      effect(s, `attempt ${s.attempt}`);
      if (s.attempt <= failures) throw new RangeError(`attempt ${s.attempt} fails`);
      return s.attempt;
    },
    { retries: { maxAttempts: 5, initialIntervalMs: 10 } },
  );
});

worker.workflow("ts.fails", async (ctx) => {
  await ctx.step("boom", () => {
    throw new TypeError("no such thing");
  });
});

worker.workflow("ts.waits", async (ctx, partner: string) => {
  await record(ctx, "before");
  await ctx.sleep(Number(process.env["SLEEP_MS"] ?? "1500"));
  await record(ctx, "slept");
  const message = await ctx.recv<{ n: number }>("inbox", { timeoutMs: 30_000 });
  await ctx.setEvent("progress", { got: message });
  const answer = await ctx.getEvent<string>(partner, "answer", { timeoutMs: 30_000 });
  const missing = await ctx.recv("nothing", { timeoutMs: 0 });
  await record(ctx, "after");
  return { message, answer, missing: missing ?? null, at: (await ctx.now()).getFullYear() > 2000 };
});

worker.workflow("ts.answer", async (ctx) => {
  await ctx.setEvent("answer", "42");
  return null;
});

worker.workflow("ts.sender", async (ctx, target: string) => {
  await ctx.send(target, { n: 7 }, { topic: "inbox", idempotencyKey: "once" });
  return "sent";
});

worker.workflow("ts.variant", async (ctx) => {
  const name = process.env["VARIANT"] === "b" ? "renamed" : "original";
  await ctx.step(name, (s) => effect(s, name));
  await ctx.recv("go");
  return name;
});

worker.workflow("ts.child", async (ctx, x: number) => {
  const doubled = await ctx.step("double", (s) => {
    effect(s, `double ${x}`);
    return 2 * x;
  });
  return { doubled, parent: ctx.workflowId };
});

worker.workflow("ts.parent", async (ctx, x: number) => {
  // A child served by a Python worker (tests/e2e/programs/children.py), then a TS one.
  const handle = await ctx.startChild<number>("e2e.child", x);
  await ctx.send(handle.workflowId, null, { topic: "go" });
  const python = await handle.result();
  const ts = await ctx.callChild<{ doubled: number }>("ts.child", x);
  return { python, ts: ts.doubled, child: handle.workflowId };
});

await worker.start();
console.log(`worker ready ${worker.workerId}`);
await worker.runUntilSignal();
