/**
 * The TypeScript client, driven by tests/e2e/test_typescript.py:
 * `node dist/test/programs/client.js <command>` with STEPLINE_ADDRESS set; prints one
 * JSON line with what it saw.
 *
 *   tour   the client API against the TS worker (and a Python worker serving flows.py)
 *   auth   against a coordinator that requires the API key in STEPLINE_TEST_KEY
 */

import { Client, SteplineError, WorkflowFailedError, Worker, type WorkflowInfo } from "../../src/index.js";

const address = process.env["STEPLINE_ADDRESS"];

/** The error's class name (and recorded type, for workflow failures). */
async function failure(run: () => Promise<unknown>): Promise<Record<string, unknown> | null> {
  try {
    await run();
    return null;
  } catch (err) {
    if (err instanceof WorkflowFailedError) return { name: err.name, status: err.status, errorType: err.errorType, errorMessage: err.errorMessage };
    if (err instanceof SteplineError) return { name: err.name, message: err.message };
    throw err;
  }
}

async function until<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function summary(info: WorkflowInfo): Record<string, unknown> {
  return { id: info.workflowId, name: info.workflowName, status: info.status, input: info.input, output: info.output };
}

async function tour(): Promise<Record<string, unknown>> {
  const client = new Client({ address });
  const greet = await client.start<{ greeting: string }>("ts.greet", "ada", { workflowId: "tour-greet", timeoutMs: 60_000 });
  const output = await greet.result({ timeoutMs: 20_000 });
  const again = await client.start("ts.greet", "ada", { workflowId: "tour-greet" });
  const steps = (await greet.steps()).map((s) => [s.stepId, s.stepName, s.status, s.kind]);
  const listed = (await client.list({ name: "ts.greet", includePayloads: true, statuses: ["SUCCEEDED"] })).workflows.map(summary);
  const failed = await failure(async () => (await client.start("ts.fails")).result({ timeoutMs: 20_000 }));
  const notFound = await failure(() => client.get("no-such-workflow"));
  const conflict = await failure(() => client.start("ts.fails", undefined, { workflowId: "tour-greet" }));
  const finished = await failure(() => client.send("tour-greet", 1));
  // A Python workflow (tests/e2e/programs/flows.py), started by name and awaited.
  const python = await (await client.start<string[]>("twenty_steps", "tour")).result({ timeoutMs: 30_000 });
  const pythonFailure = await failure(async () => (await client.start("twenty_steps", undefined, { args: [1, 2, 3] })).result({ timeoutMs: 20_000 }));
  // A TS parent with a Python child and a TS child.
  const parent = await (await client.start("ts.parent", 3)).result({ timeoutMs: 30_000 });
  // A workflow waiting on recv, cancelled.
  const waiting = await client.start("ts.variant");
  await until(async () => ((await waiting.steps()).some((s) => s.stepName === "stepline.recv") ? true : undefined), "the recv");
  const timeout = await failure(() => waiting.result({ timeoutMs: 100 }));
  const cancelled = await waiting.cancel("the tour is over");
  const cancelledResult = await failure(() => waiting.result({ timeoutMs: 10_000 }));
  const noEvent = await client.getEvent("tour-greet", "never-set", { timeoutMs: 0 });
  const badInput = await failure(() => client.start("ts.greet", 1n));
  const sendToFinished = await failure(async () => (await client.start("ts.sender", "tour-greet")).result({ timeoutMs: 20_000 }));
  return {
    output,
    created: [greet.created, again.created],
    steps,
    listed,
    failed,
    notFound,
    conflict,
    finished,
    python,
    pythonFailure,
    parent,
    cancelled: [cancelled, await waiting.status()],
    cancelledResult,
    timeout,
    noEvent: noEvent ?? null,
    badInput,
    sendToFinished,
  };
}

async function auth(): Promise<Record<string, unknown>> {
  const key = process.env["STEPLINE_TEST_KEY"] ?? "";
  const without = await failure(() => new Client({ address, apiKey: "" }).list());
  const wrong = await failure(() => new Client({ address, apiKey: "wrong" }).list());
  const right = (await new Client({ address, apiKey: key }).list()).workflows.length;
  const worker = new Worker({ address, apiKey: "wrong", logger: () => undefined });
  worker.workflow("ts.nothing", async () => null);
  const workerWrong = await failure(() => worker.start());
  return { without, wrong, right, workerWrong };
}

const command = process.argv[2];
const result = command === "tour" ? await tour() : command === "auth" ? await auth() : undefined;
if (result === undefined) throw new Error(`unknown command ${command}`);
console.log(JSON.stringify(result));
process.exit(0);
