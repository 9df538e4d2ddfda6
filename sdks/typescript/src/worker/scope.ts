/**
 * Deterministic step IDs: scoped, hierarchical, taken synchronously at the call.
 *
 * A step (or durable operation) takes its ID from its scope the moment workflow code
 * calls it, before anything is awaited, so `Promise.all([ctx.step(a), ctx.step(b)])`
 * gives the same IDs on every run. A helper that awaits several steps and runs
 * concurrently with others needs a scope of its own, or its IDs would depend on the order
 * in which the helpers' steps finish: `ctx.scope(fn)` takes the next task number of its
 * parent scope synchronously, at the call, and runs `fn` with a context whose steps are
 * numbered within it. A step's ID is the path of task numbers plus its own number in its
 * scope, exactly as the Python SDK makes them: "3" is the third step the workflow's own
 * code called, "t2/1" the first step of the second scope it opened, "t2/t1/4" deeper
 * still. Steps and scopes count separately.
 */

import { AsyncLocalStorage } from "node:async_hooks";

export class Scope {
  private steps = 0;
  private tasks = 0;

  constructor(readonly prefix = "") {}

  /** The ID of the next step called in this scope (and counts it). */
  nextStepId(): string {
    this.steps += 1;
    return `${this.prefix}${this.steps}`;
  }

  /** The ID the next step would take, taking none. */
  peekStepId(): string {
    return `${this.prefix}${this.steps + 1}`;
  }

  /** A new child scope, numbered from this scope's task counter. */
  child(): Scope {
    this.tasks += 1;
    return new Scope(`${this.prefix}t${this.tasks}/`);
  }
}

/** Marks code that runs inside a step body, where durable calls are not allowed. */
export const IN_STEP_BODY: unique symbol = Symbol("stepline.in-step-body");

/**
 * The scope whose code is running: set by the execution for the workflow function, by
 * `ctx.scope` for its callback, and to IN_STEP_BODY for step bodies. A context checks it
 * on every call, so a helper that calls steps on the wrong context (its parent's, from
 * inside `ctx.scope`) fails loudly instead of taking IDs that depend on timing.
 */
export const CURRENT = new AsyncLocalStorage<Scope | typeof IN_STEP_BODY>();
