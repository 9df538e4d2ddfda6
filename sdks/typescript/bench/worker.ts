/**
 * The benchmark's TypeScript worker (bench/languages.py starts it in place of the Python
 * one for workloads (a) and (b)):
 *
 *     STEPLINE_ADDRESS=host:port BENCH_CAPACITY=20000 node dist/bench/worker.js
 *
 * Serves `bench.sequential` and `bench.chain` with the semantics of bench/flows.py's
 * `sequential` and `chain`, around the same no-op step `noop`. Prints `worker ready <id>`
 * once registered, then serves until SIGTERM/SIGINT.
 */

import { performance } from "node:perf_hooks";
import { Worker, type WorkflowContext } from "../src/index.js";

/** The no-op step: returns its argument (async, like the Python bench worker's). */
const noop = (ctx: WorkflowContext, i: number): Promise<number> => ctx.step("noop", async () => i);

const worker = new Worker({
  address: process.env["STEPLINE_ADDRESS"],
  capacity: Number(process.env["BENCH_CAPACITY"] ?? "20000"),
});

/** (a) n steps one after another; returns each step call's duration in seconds. */
worker.workflow("bench.sequential", async (ctx, n: number) => {
  const durations: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await noop(ctx, i);
    durations.push((performance.now() - started) / 1000);
  }
  return durations;
});

/** (b) n steps one after another; returns n. */
worker.workflow("bench.chain", async (ctx, n: number) => {
  for (let i = 0; i < n; i++) await noop(ctx, i);
  return n;
});

await worker.start();
console.log(`worker ready ${worker.workerId}`);
await worker.runUntilSignal();
