package stepline

import (
	"context"
	"fmt"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
)

// StepOption configures one step call.
type StepOption func(*stepConfig)

type stepConfig struct {
	retry   *RetryPolicy
	timeout time.Duration
}

// WithRetry retries failing attempts per the policy (without it a step has one attempt).
func WithRetry(p RetryPolicy) StepOption { return func(c *stepConfig) { c.retry = &p } }

// WithStepTimeout fails an attempt that runs longer than d (its context is cancelled);
// the retry policy decides what follows.
func WithStepTimeout(d time.Duration) StepOption { return func(c *stepConfig) { c.timeout = d } }

// Step runs fn as the durable step name and returns its result once the coordinator has
// recorded it. A step already recorded (on a replay) returns its recorded result, or its
// recorded error as an *Error, without running. The result the workflow sees is always
// the recorded JSON decoded into T, on the first run as on replays.
func Step[T any](ctx Context, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (T, error) {
	id, err := ctx.scope().nextStepID()
	if err != nil {
		return *new(T), err
	}
	return runStep(ctx.scope().ex, id, name, fn, opts)
}

// StepAsync takes the step's ID now (at the call) and runs the step in the background:
// the way to run steps concurrently from one scope. Get the result from the future.
func StepAsync[T any](ctx Context, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) *Future[T] {
	f := newFuture[T]()
	id, err := ctx.scope().nextStepID()
	if err != nil {
		f.set(*new(T), err)
		return f
	}
	go func() { f.set(runStep(ctx.scope().ex, id, name, fn, opts)) }()
	return f
}

func runStep[T any](ex *execution, id, name string, fn func(context.Context) (T, error), opts []StepOption) (T, error) {
	var zero T
	var cfg stepConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	attempt := int32(1)
	if rec := ex.recorded[id]; rec != nil {
		if rec.GetStepName() != name {
			return zero, ex.nondeterminism(id, rec.GetStepName(), name)
		}
		switch rec.GetStatus() {
		case pb.StepStatus_STEP_STATUS_SUCCEEDED:
			var v T
			return v, decodeInto(rec.GetOutput(), &v, "the recorded result of step "+name)
		case pb.StepStatus_STEP_STATUS_FAILED:
			return zero, fromErrorInfo(rec.GetError())
		}
		attempt = rec.GetAttempts() + 1 // RUNNING: that attempt was interrupted
	}
	if err := ex.checkRunning(); err != nil {
		return zero, err
	}
	var value T
	for {
		if err := ex.w.session.leaseHeld(ex.ctx); err != nil {
			return zero, err
		}
		if err := ex.checkRunning(); err != nil {
			return zero, err
		}
		ex.w.session.send(&pb.WorkerEvent{Kind: &pb.WorkerEvent_StepStart{StepStart: &pb.StepStart{
			WorkflowId: ex.id, Epoch: ex.epoch, StepId: id, StepName: name, Attempt: attempt}}})
		ex.busy(1)
		v, err := body(ex, id, name, attempt, fn, cfg.timeout)
		ex.busy(-1)
		if ex.ctx.Err() != nil {
			return zero, context.Cause(ex.ctx) // abandoned meanwhile: report nothing
		}
		if err == nil {
			value = v
			break
		}
		if cfg.retry != nil && cfg.retry.Retries(err, int(attempt)) {
			ex.w.log.Info("stepline: step failed; retrying", "workflow", ex.id, "step", id, "attempt", attempt, "error", err)
			if err := backOff(ex, cfg.retry.Delay(int(attempt))); err != nil {
				return zero, err
			}
			attempt++
			continue
		}
		info := errorInfo(err)
		result := &pb.StepResult{WorkflowId: ex.id, Epoch: ex.epoch, StepId: id, StepName: name, Attempt: attempt,
			Outcome: &pb.StepResult_Error{Error: info}}
		if rerr := ex.record(result); rerr != nil {
			return zero, rerr
		}
		return zero, fromErrorInfo(info) // as a replay will return it
	}
	result := &pb.StepResult{WorkflowId: ex.id, Epoch: ex.epoch, StepId: id, StepName: name, Attempt: attempt}
	payload, err := encode(value, fmt.Sprintf("the result of step %q", name), ex.w.session.maxPayload())
	if err != nil {
		result.Outcome = &pb.StepResult_Error{Error: errorInfo(err)}
		if rerr := ex.record(result); rerr != nil {
			return zero, rerr
		}
		return zero, fromErrorInfo(result.GetError())
	}
	result.Outcome = &pb.StepResult_Output{Output: payload}
	if err := ex.record(result); err != nil {
		return zero, err
	}
	// The workflow sees the value as a replay will: decoded from what was recorded.
	var out T
	return out, decodeInto(payload, &out, "the result of step "+name)
}

// body runs one attempt of a step body, within its timeout, recovering a panic.
func body[T any](ex *execution, id, name string, attempt int32, fn func(context.Context) (T, error), timeout time.Duration) (v T, err error) {
	ctx := context.WithValue(ex.ctx, stepCtxKey{}, StepContext{WorkflowID: ex.id, StepID: id, StepName: name, Attempt: attempt})
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("step %q (%s) attempt %d timed out after %s", name, id, attempt, timeout))
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	v, err = fn(ctx)
	if err == nil && ctx.Err() != nil && ex.ctx.Err() == nil {
		err = context.Cause(ctx) // ran out of time, even if the body ignored it
	}
	return v, err
}

// backOff waits between two attempts; the execution is busy meanwhile, not idle.
func backOff(ex *execution, d time.Duration) error {
	ex.busy(1)
	defer ex.busy(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ex.ctx.Done():
		return context.Cause(ex.ctx)
	}
}
