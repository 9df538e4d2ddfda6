package stepline

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
)

// execution is one run of one workflow on this worker, under one epoch: replay, step
// results waiting for their StepAck, durable operations waiting for their StepDone,
// idleness and suspension, and the final result.
type execution struct {
	w        *Worker
	def      *workflowDef
	id       string
	epoch    int64
	input    *pb.Payload
	recorded map[string]*pb.RecordedStep // read-only after creation
	ctx      context.Context
	cancel   context.CancelCauseFunc

	mu           sync.Mutex
	unacked      map[string]*pb.WorkerEvent // step results sent, not yet acknowledged
	acks         map[string]chan error      // step calls waiting for their StepAck
	calls        map[string]*opCall         // operations sent, not yet done
	bodies       int                        // step bodies (and retry back-offs) running
	result       *pb.WorkerEvent
	fatal        error // fails the workflow whatever its code does (non-determinism, ...)
	stopped      bool
	idle         bool
	suspendTimer *time.Timer
}

type opCall struct {
	event *pb.WorkerEvent
	wait  bool // a Wait: what an idle execution is blocked on
	done  chan opOutcome
}

type opOutcome struct {
	done *pb.StepDone
	err  error
}

func newExecution(w *Worker, def *workflowDef, a *pb.Assignment) *execution {
	ex := &execution{
		w: w, def: def, id: a.GetWorkflowId(), epoch: a.GetEpoch(), input: a.GetInput(),
		recorded: make(map[string]*pb.RecordedStep, len(a.GetSteps())),
		unacked:  map[string]*pb.WorkerEvent{}, acks: map[string]chan error{}, calls: map[string]*opCall{},
	}
	for _, s := range a.GetSteps() {
		ex.recorded[s.GetStepId()] = s
	}
	ex.ctx, ex.cancel = context.WithCancelCause(context.Background())
	return ex
}

// run runs the workflow function and reports how it ended.
func (ex *execution) run() {
	root := newScope(ex, "")
	output, err := ex.def.run(&wfContext{Context: ex.ctx, sc: root}, ex.input, ex.w.session.maxPayload())
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.stopped {
		return // whatever its code did while being stopped is nobody's business
	}
	if ex.fatal != nil {
		err = ex.fatal
	}
	result := &pb.WorkflowResult{WorkflowId: ex.id, Epoch: ex.epoch}
	if err != nil {
		result.Outcome = &pb.WorkflowResult_Error{Error: errorInfo(err)}
		ex.w.log.Info("stepline: workflow failed", "workflow", ex.id, "error", err)
	} else {
		result.Outcome = &pb.WorkflowResult_Output{Output: output}
	}
	ex.result = &pb.WorkerEvent{Kind: &pb.WorkerEvent_WorkflowResult{WorkflowResult: result}}
	ex.stopSuspendLocked()
	ex.w.session.send(ex.result)
}

// --- driven by the coordinator's events -----------------------------------------------

func (ex *execution) stepAcked(stepID string) {
	ex.mu.Lock()
	delete(ex.unacked, stepID)
	ch := ex.acks[stepID]
	delete(ex.acks, stepID)
	ex.mu.Unlock()
	if ch != nil {
		ch <- nil
	}
	ex.w.progressed()
}

func (ex *execution) stepDone(ev *pb.StepDone) {
	ex.mu.Lock()
	c := ex.calls[ev.GetStepId()]
	ex.mu.Unlock()
	if c != nil {
		select {
		case c.done <- opOutcome{done: ev}:
		default:
		}
	}
	ex.w.progressed()
}

func (ex *execution) rejected(stepID, message string) {
	problem := &Error{Type: "stepline.RejectedError", Message: "the coordinator refused " + stepID + ": " + message}
	ex.mu.Lock()
	if stepID == "" {
		if ex.result != nil && ex.result.GetWorkflowResult().GetOutput() != nil {
			// The output was refused: record the refusal as the workflow's error instead.
			ex.result = &pb.WorkerEvent{Kind: &pb.WorkerEvent_WorkflowResult{WorkflowResult: &pb.WorkflowResult{
				WorkflowId: ex.id, Epoch: ex.epoch, Outcome: &pb.WorkflowResult_Error{Error: errorInfo(problem)}}}}
			ex.w.session.send(ex.result)
		} else {
			ex.w.log.Error("stepline: workflow result refused", "workflow", ex.id, "message", message)
		}
		ex.mu.Unlock()
		return
	}
	delete(ex.unacked, stepID)
	if ex.fatal == nil {
		ex.fatal = problem
	}
	ack, call := ex.acks[stepID], ex.calls[stepID]
	delete(ex.acks, stepID)
	ex.mu.Unlock()
	if ack != nil {
		ack <- problem
	}
	if call != nil {
		select {
		case call.done <- opOutcome{err: problem}:
		default:
		}
	}
}

// stop ends this execution at once: its context is cancelled with cause, and nothing
// more about it is reported.
func (ex *execution) stop(cause error) {
	ex.mu.Lock()
	if ex.stopped {
		ex.mu.Unlock()
		return
	}
	ex.stopped = true
	ex.stopSuspendLocked()
	ex.mu.Unlock()
	ex.cancel(cause)
}

// pending is what to resend after a reconnect: unacknowledged results, operations not
// yet done (a repeat is answered with the recorded outcome), Idle, the workflow result.
func (ex *execution) pending() []*pb.WorkerEvent {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.stopped {
		return nil
	}
	var out []*pb.WorkerEvent
	for _, id := range sortedKeys(ex.unacked) {
		out = append(out, ex.unacked[id])
	}
	for _, id := range sortedKeys(ex.calls) {
		out = append(out, ex.calls[id].event)
	}
	if ex.idle {
		out = append(out, idleEvent(ex.id, ex.epoch))
	}
	if ex.result != nil {
		out = append(out, ex.result)
	}
	return out
}

// settled: nothing of it waits for an acknowledgement (open waits aside).
func (ex *execution) settled() bool {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	waits := 0
	for _, c := range ex.calls {
		if c.wait {
			waits++
		}
	}
	return ex.stopped || (len(ex.unacked) == 0 && len(ex.calls) == waits && ex.result == nil && ex.bodies == 0)
}

// --- used by step calls and durable operations ------------------------------------------

// checkRunning says why nothing more may run, if so.
func (ex *execution) checkRunning() error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	switch {
	case ex.stopped:
		return context.Cause(ex.ctx)
	case ex.fatal != nil:
		return ex.fatal
	case ex.result != nil:
		return fmt.Errorf("stepline: workflow %s has already returned", ex.id)
	}
	return nil
}

// failWith records an error that fails the workflow even if its code handles it.
func (ex *execution) failWith(err error) error {
	ex.mu.Lock()
	if ex.fatal == nil {
		ex.fatal = err
	}
	ex.mu.Unlock()
	return err
}

func (ex *execution) nondeterminism(stepID, recorded, called string) error {
	return ex.failWith(&NonDeterminismError{WorkflowID: ex.id, StepID: stepID, RecordedName: recorded, CalledName: called})
}

// record sends a step's outcome; returns once the coordinator has made it durable.
func (ex *execution) record(result *pb.StepResult) error {
	ev := &pb.WorkerEvent{Kind: &pb.WorkerEvent_StepResult{StepResult: result}}
	ch := make(chan error, 1)
	ex.mu.Lock()
	if ex.stopped {
		ex.mu.Unlock()
		return context.Cause(ex.ctx)
	}
	ex.acks[result.GetStepId()] = ch
	ex.unacked[result.GetStepId()] = ev
	ex.mu.Unlock()
	ex.w.session.send(ev)
	defer ex.updateIdle()
	select {
	case err := <-ch:
		return err
	case <-ex.ctx.Done():
		return context.Cause(ex.ctx)
	}
}

// call asks the coordinator to carry out an operation; returns its outcome once durable.
func (ex *execution) call(stepID string, ev *pb.WorkerEvent, wait bool) (*pb.StepDone, error) {
	c := &opCall{event: ev, wait: wait, done: make(chan opOutcome, 1)}
	ex.mu.Lock()
	if ex.stopped {
		ex.mu.Unlock()
		return nil, context.Cause(ex.ctx)
	}
	ex.calls[stepID] = c
	ex.mu.Unlock()
	ex.w.session.send(ev)
	ex.updateIdle()
	defer func() {
		ex.mu.Lock()
		delete(ex.calls, stepID)
		ex.mu.Unlock()
		ex.updateIdle()
	}()
	select {
	case out := <-c.done:
		return out.done, out.err
	case <-ex.ctx.Done():
		return nil, context.Cause(ex.ctx)
	}
}

// busy counts a step body or a retry back-off: the execution is not idle meanwhile.
func (ex *execution) busy(delta int) {
	ex.mu.Lock()
	ex.bodies += delta
	ex.mu.Unlock()
	ex.w.bodies(delta)
	ex.updateIdle()
}

// --- idleness and suspension --------------------------------------------------------------

// updateIdle: idle is blocked on open waits only (no step body, result or other
// operation in flight). Idle is sent when that begins; Suspend after suspendAfter.
func (ex *execution) updateIdle() {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	waits := 0
	for _, c := range ex.calls {
		if c.wait {
			waits++
		}
	}
	idle := waits > 0 && !ex.stopped && ex.result == nil && ex.bodies == 0 && len(ex.unacked) == 0 && len(ex.calls) == waits
	if idle == ex.idle {
		return
	}
	ex.idle = idle
	if !idle {
		ex.stopSuspendLocked()
		return
	}
	ex.w.session.send(idleEvent(ex.id, ex.epoch))
	if after := ex.w.suspendAfter; after >= 0 {
		ex.suspendTimer = time.AfterFunc(after, ex.suspend)
	}
}

func (ex *execution) stopSuspendLocked() {
	if ex.suspendTimer != nil {
		ex.suspendTimer.Stop()
		ex.suspendTimer = nil
	}
}

// suspend gives the waiting execution back to the coordinator and forgets it.
func (ex *execution) suspend() {
	ex.mu.Lock()
	if !ex.idle || ex.stopped {
		ex.mu.Unlock()
		return
	}
	var waiting []string
	for id, c := range ex.calls {
		if c.wait {
			waiting = append(waiting, id)
		}
	}
	sort.Strings(waiting)
	ex.w.session.send(&pb.WorkerEvent{Kind: &pb.WorkerEvent_Suspend{Suspend: &pb.Suspend{
		WorkflowId: ex.id, Epoch: ex.epoch, WaitingOn: waiting}}})
	ex.mu.Unlock()
	ex.w.forget(ex)
	ex.stop(fmt.Errorf("%w: suspended while waiting", ErrAbandoned))
}

func idleEvent(id string, epoch int64) *pb.WorkerEvent {
	return &pb.WorkerEvent{Kind: &pb.WorkerEvent_Idle{Idle: &pb.Idle{WorkflowId: id, Epoch: epoch}}}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
