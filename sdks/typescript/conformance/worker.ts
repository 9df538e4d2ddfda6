/**
 * The TypeScript SDK's conformance interpreter (conformance/README.md):
 * `node dist/conformance/worker.js` from sdks/typescript, with STEPLINE_ADDRESS set.
 *
 * It serves `conformance.interpreter`, whose input is a program `{"commands": [...]}`,
 * and prints `conformance ready <worker ID> features=...` once registered. Environment:
 * CONFORMANCE_EFFECTS (the effects file), CONFORMANCE_WORKER (the worker name in effect
 * lines), CONFORMANCE_DIR (where release files appear), CONFORMANCE_RENAME (`A=B`: a step
 * named A is called B), CONFORMANCE_SUSPEND_AFTER_MS (absent: the SDK's default).
 */

import { closeSync, existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Worker, type StepContext, type WorkflowContext } from "../src/index.js";

const FEATURES = ["steps", "scopes", "waits", "nondeterminism"];

/** The failure a `fail` command plans; the SDK records an Error's `name` as its type. */
class Planned extends Error {
  override name = "conformance.Planned";
}

type Command = Record<string, unknown>;
interface Program {
  commands: Command[];
}

function renamed(name: string): string {
  const rename = process.env["CONFORMANCE_RENAME"] ?? "";
  const at = rename.indexOf("=");
  if (at <= 0) return name;
  return name === rename.slice(0, at) ? rename.slice(at + 1) : name;
}

/** Appends this step body's effect line (one O_APPEND write); returns how many lines of
 * this step (workflow ID, step ID, name) the file holds now. */
function effect(s: StepContext, name: string): number {
  const path = process.env["CONFORMANCE_EFFECTS"];
  const prefix = `${s.workflowId}\t${s.stepId}\t${name}\t`;
  const line = `${prefix}${process.env["CONFORMANCE_WORKER"] ?? ""}\n`;
  if (path === undefined || path === "") return 1;
  const fd = openSync(path, "a", 0o644);
  try {
    writeSync(fd, line);
  } finally {
    closeSync(fd);
  }
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((seen) => seen.startsWith(prefix)).length;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function run(ctx: WorkflowContext, commands: Command[]): Promise<unknown[]> {
  const results: unknown[] = [];
  for (const command of commands) {
    const [kind, arg] = Object.entries(command)[0] ?? ["(empty)", undefined];
    results.push(await one(ctx, kind, arg as Record<string, unknown>));
  }
  return results;
}

async function one(ctx: WorkflowContext, kind: string, arg: Record<string, unknown>): Promise<unknown> {
  switch (kind) {
    case "step": {
      const name = renamed(arg["name"] as string);
      const output = arg["output"] ?? null;
      return await ctx.step(name, (s) => {
        effect(s, name);
        return output;
      });
    }
    case "fail": {
      const name = renamed(arg["name"] as string);
      const times = arg["times"] as number;
      const retries = arg["retries"] as number;
      return await ctx.step(
        name,
        (s) => {
          if (effect(s, name) <= times) throw new Planned(`attempt ${s.attempt}`);
          return "ok";
        },
        { retries: { maxAttempts: retries + 1, initialIntervalMs: 10, maxIntervalMs: 10 } },
      );
    }
    case "block": {
      const name = renamed(arg["name"] as string);
      await ctx.step(name, async (s) => {
        effect(s, name);
        const release = join(process.env["CONFORMANCE_DIR"] ?? ".", `release-${s.workflowId}-${name}`);
        while (!existsSync(release) && !s.signal.aborted) await pause(10);
        return null;
      });
      return null;
    }
    case "parallel": {
      // Each branch in a scope of its own, opened in order (the scope takes its task
      // number at the call), all awaited.
      const branches = arg as unknown as Command[][];
      return await Promise.all(branches.map((branch) => ctx.scope((c) => run(c, branch))));
    }
    case "sleep":
      await ctx.sleep(arg["ms"] as number);
      return null;
    case "recv":
      return (await ctx.recv(arg["topic"] as string)) ?? null;
    case "set_event":
      await ctx.setEvent(arg["key"] as string, arg["value"]);
      return null;
    default:
      throw new Error(`unknown command '${kind}'`);
  }
}

const suspend = process.env["CONFORMANCE_SUSPEND_AFTER_MS"];
const worker = new Worker({
  address: process.env["STEPLINE_ADDRESS"],
  ...(suspend !== undefined && suspend !== "" ? { suspendAfterMs: Number(suspend) } : {}),
});

worker.workflow("conformance.interpreter", (ctx, program: Program) => run(ctx, [...program.commands]));

await worker.start();
process.stdout.write(`conformance ready ${worker.workerId} features=${FEATURES.join(",")}\n`);
await worker.runUntilSignal();
