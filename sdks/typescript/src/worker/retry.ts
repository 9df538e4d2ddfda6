/** Retry policies for steps. */

import { InvalidArgumentError } from "../errors.js";

/**
 * How a failing step is retried before its error is recorded and thrown. Attempt n (from
 * 1) that fails waits `initialIntervalMs * backoffFactor ** (n - 1)` ms, at most
 * `maxIntervalMs`, before attempt n + 1, up to `maxAttempts` attempts in all. An error for
 * which `nonRetryable(err)` is true is recorded at once. Every attempt's start is
 * recorded, so attempts survive a crash: a recovered step goes on counting where it was.
 */
export interface RetryPolicy {
  /** Attempts in all, counting the first (default 3). */
  maxAttempts?: number;
  /** Wait after the first failed attempt, in ms (default 1000). */
  initialIntervalMs?: number;
  /** Each wait is this many times the previous one (default 2). */
  backoffFactor?: number;
  /** The longest wait, in ms (default 60 000). */
  maxIntervalMs?: number;
  /** Errors that are recorded at once, without another attempt. */
  nonRetryable?: (err: unknown) => boolean;
}

export class Retry {
  static readonly NONE = new Retry({ maxAttempts: 1 });

  readonly maxAttempts: number;
  readonly initialIntervalMs: number;
  readonly backoffFactor: number;
  readonly maxIntervalMs: number;
  private readonly nonRetryable: (err: unknown) => boolean;

  constructor(policy: RetryPolicy) {
    this.maxAttempts = policy.maxAttempts ?? 3;
    this.initialIntervalMs = policy.initialIntervalMs ?? 1000;
    this.backoffFactor = policy.backoffFactor ?? 2;
    this.maxIntervalMs = policy.maxIntervalMs ?? 60_000;
    this.nonRetryable = policy.nonRetryable ?? (() => false);
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) {
      throw new InvalidArgumentError("retries.maxAttempts must be an integer of at least 1");
    }
    if (!(this.initialIntervalMs >= 0) || !(this.maxIntervalMs >= 0)) {
      throw new InvalidArgumentError("retry intervals must not be negative");
    }
    if (!(this.backoffFactor >= 1)) throw new InvalidArgumentError("retries.backoffFactor must be at least 1");
  }

  static from(policy: RetryPolicy | undefined): Retry {
    return policy === undefined ? Retry.NONE : new Retry(policy);
  }

  /** Whether attempt `attempt` failing with `err` is followed by another. */
  retries(err: unknown, attempt: number): boolean {
    return attempt < this.maxAttempts && !this.nonRetryable(err);
  }

  /** Ms to wait after attempt `attempt` failed. */
  delay(attempt: number): number {
    return Math.min(this.initialIntervalMs * this.backoffFactor ** (attempt - 1), this.maxIntervalMs);
  }
}
