package stepline

import (
	"fmt"
	"strings"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NoTimeout makes Recv and GetEvent wait for ever.
const NoTimeout time.Duration = -1

// Durable operations take a step ID at the call, like steps, and are recorded under
// "stepline.<kind>". A finished one returns its recorded outcome on a replay; a WAITING
// one is sent again (the coordinator keeps its first wake time and timeout).

// operate runs (or replays) one operation: its output and whether it timed out. A wait's
// duration or timeout counts from this call (waits.go).
func operate(ctx Context, kind pb.StepKind, build func(ex *execution, stepID string) (*pb.WorkerEvent, error)) (*pb.Payload, bool, error) {
	at := time.Now()
	sc := ctx.scope()
	id, err := sc.nextStepID()
	if err != nil {
		return nil, false, err
	}
	ex := sc.ex
	name := "stepline." + strings.ToLower(strings.TrimPrefix(kind.String(), "STEP_KIND_"))
	if rec := ex.recorded[id]; rec != nil {
		if rec.GetStepName() != name {
			return nil, false, ex.nondeterminism(id, rec.GetStepName(), name)
		}
		switch rec.GetStatus() {
		case pb.StepStatus_STEP_STATUS_SUCCEEDED:
			return rec.GetOutput(), rec.GetTimedOut(), nil
		case pb.StepStatus_STEP_STATUS_FAILED:
			return nil, false, fromErrorInfo(rec.GetError())
		}
		// WAITING: the wait goes on; the coordinator kept its condition.
	}
	if err := ex.checkRunning(); err != nil {
		return nil, false, err
	}
	ev, err := build(ex, id)
	if err != nil {
		return nil, false, err
	}
	_, isWait := ev.GetKind().(*pb.WorkerEvent_Wait)
	if isWait {
		ex.w.session.waits.start(ev, at)
		defer ex.w.session.waits.done(ev)
	}
	done, err := ex.call(id, ev, isWait)
	if err != nil {
		return nil, false, err
	}
	if done.GetError() != nil {
		return nil, false, fromErrorInfo(done.GetError())
	}
	return done.GetOutput(), done.GetTimedOut(), nil
}

func wait(ex *execution, id string, w *pb.Wait) *pb.WorkerEvent {
	w.WorkflowId, w.Epoch, w.StepId = ex.id, ex.epoch, id
	return &pb.WorkerEvent{Kind: &pb.WorkerEvent_Wait{Wait: w}}
}

func timeoutPB(d time.Duration) *durationpb.Duration {
	if d < 0 {
		return nil
	}
	return durationpb.New(d)
}

// Sleep sleeps durably: the wake time is recorded when the sleep first runs, so after a
// crash or a suspension only what is left is slept.
func Sleep(ctx Context, d time.Duration) error {
	_, _, err := operate(ctx, pb.StepKind_STEP_KIND_SLEEP, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		return wait(ex, id, &pb.Wait{Condition: &pb.Wait_Sleep{Sleep: &pb.SleepCondition{
			Wake: &pb.SleepCondition_Duration{Duration: durationpb.New(max(d, 0))}}}}), nil
	})
	return err
}

// SleepUntil sleeps durably until t.
func SleepUntil(ctx Context, t time.Time) error {
	_, _, err := operate(ctx, pb.StepKind_STEP_KIND_SLEEP, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		return wait(ex, id, &pb.Wait{Condition: &pb.Wait_Sleep{Sleep: &pb.SleepCondition{
			Wake: &pb.SleepCondition_Until{Until: timestamppb.New(t)}}}}), nil
	})
	return err
}

// Recv takes the oldest unread message of topic sent to this workflow, waiting up to
// timeout (NoTimeout: for ever; 0: only one already there). ok is false on timeout.
// Each message is received once.
func Recv[T any](ctx Context, topic string, timeout time.Duration) (msg T, ok bool, err error) {
	out, timedOut, err := operate(ctx, pb.StepKind_STEP_KIND_RECV, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		return wait(ex, id, &pb.Wait{Condition: &pb.Wait_Recv{Recv: &pb.RecvCondition{Topic: topic, Timeout: timeoutPB(timeout)}}}), nil
	})
	if err != nil || timedOut {
		return msg, false, err
	}
	return msg, true, decodeInto(out, &msg, "the message of topic "+topic)
}

// Send sends message to a workflow's mailbox, exactly once (a recorded operation of this
// workflow). Fails with an *Error matching ErrNotFound or ErrFinished.
func Send(ctx Context, workflowID, topic string, message any) error {
	_, _, err := operate(ctx, pb.StepKind_STEP_KIND_SEND, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		payload, err := encode(message, "the message to workflow "+workflowID, ex.w.session.maxPayload())
		if err != nil {
			return nil, err
		}
		return &pb.WorkerEvent{Kind: &pb.WorkerEvent_Send{Send: &pb.Send{WorkflowId: ex.id, Epoch: ex.epoch, StepId: id,
			DestinationId: workflowID, Topic: topic, Message: payload}}}, nil
	})
	return err
}

// SetEvent sets one of this workflow's events (the latest value wins).
func SetEvent(ctx Context, key string, value any) error {
	_, _, err := operate(ctx, pb.StepKind_STEP_KIND_SET_EVENT, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		payload, err := encode(value, "the value of event "+key, ex.w.session.maxPayload())
		if err != nil {
			return nil, err
		}
		return &pb.WorkerEvent{Kind: &pb.WorkerEvent_SetEvent{SetEvent: &pb.SetEvent{WorkflowId: ex.id, Epoch: ex.epoch,
			StepId: id, Key: key, Value: payload}}}, nil
	})
	return err
}

// GetEvent waits up to timeout (NoTimeout: for ever) for a workflow's event and returns
// its value; ok is false if it was not set in time. Recorded: a replay returns the same.
func GetEvent[T any](ctx Context, workflowID, key string, timeout time.Duration) (value T, ok bool, err error) {
	out, timedOut, err := operate(ctx, pb.StepKind_STEP_KIND_GET_EVENT, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		return wait(ex, id, &pb.Wait{Condition: &pb.Wait_GetEvent{GetEvent: &pb.EventCondition{
			WorkflowId: workflowID, Key: key, Timeout: timeoutPB(timeout)}}}), nil
	})
	if err != nil || timedOut {
		return value, false, err
	}
	return value, true, decodeInto(out, &value, "event "+key)
}

// ChildHandle is a workflow started by this workflow with StartChild.
type ChildHandle struct{ WorkflowID string }

// StartChild starts the workflow registered as name (served by any worker, in any
// language) as a child, with input as its one argument, and returns once the start is
// recorded. Its ID is "<this workflow's ID>/<step ID of the start>" unless childID is
// given. Exactly once: a replay returns the same child.
func StartChild(ctx Context, name string, input any, childID string) (ChildHandle, error) {
	var chosen string
	out, _, err := operate(ctx, pb.StepKind_STEP_KIND_START_CHILD, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		var args []any
		if input != nil {
			args = []any{input}
		}
		payload, err := encodeArgs(args, "the input of child workflow "+name, ex.w.session.maxPayload())
		if err != nil {
			return nil, err
		}
		chosen = childID
		if chosen == "" {
			chosen = ex.id + "/" + id
		}
		return &pb.WorkerEvent{Kind: &pb.WorkerEvent_StartChild{StartChild: &pb.StartChild{WorkflowId: ex.id, Epoch: ex.epoch,
			StepId: id, ChildWorkflowId: chosen, WorkflowName: name, Input: payload}}}, nil
	})
	if err != nil {
		return ChildHandle{}, err
	}
	// The recorded output is the child's ID (a forked run shares its parent run's child).
	var recorded string
	if decodeInto(out, &recorded, "the child's ID") == nil && recorded != "" {
		chosen = recorded
	}
	if chosen == "" {
		return ChildHandle{}, fmt.Errorf("stepline: the start of child %q recorded no ID", name)
	}
	return ChildHandle{WorkflowID: chosen}, nil
}

// AwaitWorkflow waits durably for a workflow (a child, or any other) to finish and
// returns its output, or its error as an *Error. Recorded: a replay returns the same.
func AwaitWorkflow[T any](ctx Context, workflowID string) (T, error) {
	var v T
	out, _, err := operate(ctx, pb.StepKind_STEP_KIND_AWAIT_WORKFLOW, func(ex *execution, id string) (*pb.WorkerEvent, error) {
		return wait(ex, id, &pb.Wait{Condition: &pb.Wait_Workflow{Workflow: &pb.WorkflowCondition{WorkflowId: workflowID}}}), nil
	})
	if err != nil {
		return v, err
	}
	return v, decodeInto(out, &v, "the output of workflow "+workflowID)
}
