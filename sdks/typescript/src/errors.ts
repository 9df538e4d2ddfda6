/**
 * The SDK's errors, all under SteplineError.
 *
 *     SteplineError
 *     ├── NonDeterminismError          a replay reached a recorded step ID under another name
 *     ├── WorkflowFailedError          a workflow ended without an output (client side)
 *     ├── StepFailedError              a recorded error of a step or operation
 *     ├── SerializationError           a value cannot be encoded as JSON (or decoded)
 *     │   └── PayloadTooLargeError     an encoded value is over the coordinator's limit
 *     ├── WorkflowNotFoundError        no workflow has that ID                (NOT_FOUND)
 *     ├── WorkflowFinishedError        a message was sent to a finished workflow
 *     ├── WorkflowConflictError        the ID belongs to another workflow name (ALREADY_EXISTS)
 *     ├── WorkflowTimedOutError        a workflow's timeout or deadline passed (TIMED_OUT)
 *     ├── WorkflowCancelledError       a workflow was cancelled (CANCELLED)
 *     ├── MaxRecoveryAttemptsExceeded  a workflow's executions kept dying
 *     ├── InvalidArgumentError         the coordinator refused a malformed request
 *     ├── AuthenticationError          missing or wrong API key               (UNAUTHENTICATED)
 *     ├── CoordinatorUnavailableError  coordinator or database unreachable     (UNAVAILABLE)
 *     ├── StepTimeoutError             one attempt of a step ran out of time
 *     ├── ResultTimeoutError           awaiting a result gave up; the workflow still runs
 *     └── NotInWorkflowError           a workflow-only call made elsewhere (a step body, ...)
 *
 * Errors recorded by the coordinator under the type "stepline.<Name>" (for example
 * "stepline.WorkflowNotFoundError" for a Send to an unknown workflow) come back to
 * workflow code as the class of that name.
 */

export class SteplineError extends Error {
  override name = "SteplineError";
}

export class NonDeterminismError extends SteplineError {
  override name = "NonDeterminismError";
  constructor(
    readonly workflowId: string,
    readonly stepId: string,
    readonly recordedName: string,
    readonly calledName: string,
  ) {
    super(
      `non-determinism in workflow '${workflowId}': step '${stepId}' was recorded as ` +
        `'${recordedName}' but the code now calls '${calledName}' there`,
    );
  }
}

/** A workflow ended FAILED (or CANCELLED, TIMED_OUT, PAUSED, ...), as a client sees it. */
export class WorkflowFailedError extends SteplineError {
  override name = "WorkflowFailedError";
  constructor(
    readonly workflowId: string,
    /** The final status, such as "FAILED" or "TIMED_OUT". */
    readonly status: string,
    /** The recorded error's type, such as "TypeError" or "builtins.ValueError". */
    readonly errorType: string,
    /** The recorded error's message. */
    readonly errorMessage: string,
    readonly traceback: string = "",
  ) {
    super(`workflow '${workflowId}' ended ${status}: ${errorType}: ${errorMessage}`);
  }
}

/**
 * A recorded failure of a step or durable operation. Workflow code sees the same error on
 * the first run and on every replay: its recorded type and message, not the original
 * object (which a replay cannot rebuild).
 */
export class StepFailedError extends SteplineError {
  override name = "StepFailedError";
  constructor(
    /** The recorded type, such as "TypeError" or "builtins.ValueError". */
    readonly errorType: string,
    /** The recorded message. */
    readonly errorMessage: string,
    readonly traceback: string = "",
  ) {
    super(`${errorType}: ${errorMessage}`);
  }
}

export class SerializationError extends SteplineError {
  override name = "SerializationError";
}
export class PayloadTooLargeError extends SerializationError {
  override name = "PayloadTooLargeError";
}
export class WorkflowNotFoundError extends SteplineError {
  override name = "WorkflowNotFoundError";
}
export class WorkflowFinishedError extends SteplineError {
  override name = "WorkflowFinishedError";
}
export class WorkflowConflictError extends SteplineError {
  override name = "WorkflowConflictError";
}
export class WorkflowTimedOutError extends SteplineError {
  override name = "WorkflowTimedOutError";
}
export class WorkflowCancelledError extends SteplineError {
  override name = "WorkflowCancelledError";
}
export class MaxRecoveryAttemptsExceeded extends SteplineError {
  override name = "MaxRecoveryAttemptsExceeded";
}
export class InvalidArgumentError extends SteplineError {
  override name = "InvalidArgumentError";
}
export class AuthenticationError extends SteplineError {
  override name = "AuthenticationError";
}
export class CoordinatorUnavailableError extends SteplineError {
  override name = "CoordinatorUnavailableError";
}
export class StepTimeoutError extends SteplineError {
  override name = "StepTimeoutError";
}
export class ResultTimeoutError extends SteplineError {
  override name = "ResultTimeoutError";
}
export class NotInWorkflowError extends SteplineError {
  override name = "NotInWorkflowError";
}

type MessageError = new (message: string) => SteplineError;

/** Errors rebuilt by name from a recorded "stepline.<Name>" type. */
export const RECORDED_STEPLINE_ERRORS: Readonly<Record<string, MessageError>> = {
  SerializationError,
  PayloadTooLargeError,
  WorkflowNotFoundError,
  WorkflowFinishedError,
  WorkflowConflictError,
  WorkflowTimedOutError,
  WorkflowCancelledError,
  MaxRecoveryAttemptsExceeded,
  InvalidArgumentError,
  StepTimeoutError,
};
