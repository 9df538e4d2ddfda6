package stepline

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testExecution(steps ...*pb.RecordedStep) *execution {
	w := NewWorker("unused")
	return newExecution(w, &workflowDef{name: "wf"}, &pb.Assignment{WorkflowId: "wf-1", Epoch: 1, Steps: steps})
}

func TestStepIDsFollowThePythonShape(t *testing.T) {
	ex := testExecution()
	root := newScope(ex, "")
	var got []string
	take := func(s *scope) {
		id, err := s.nextStepID()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	take(root)
	take(root)
	t1, _ := root.child()
	t2, _ := root.child()
	take(root)
	done := make(chan struct{})
	go func() { // a helper's scope belongs to the goroutine that runs it
		defer close(done)
		t2.owner.Store(goroutineID())
		take(t2)
		inner, _ := t2.child()
		inner.owner.Store(goroutineID())
		take(inner)
		take(inner)
	}()
	<-done
	t1.owner.Store(goroutineID())
	take(t1)
	want := []string{"1", "2", "3", "t2/1", "t2/t1/1", "t2/t1/2", "t1/1"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestAScopeUsedFromAnotherGoroutineFailsTheWorkflow(t *testing.T) {
	ex := testExecution()
	root := newScope(ex, "")
	errs := make(chan error)
	go func() { _, err := root.nextStepID(); errs <- err }()
	if err := <-errs; !errors.Is(err, ErrScope) && !isType(err, ScopeErrorType) {
		t.Fatalf("got %v, want a scope error", err)
	}
	if err := ex.checkRunning(); !isType(err, ScopeErrorType) {
		t.Fatalf("the workflow must fail with the scope error, got %v", err)
	}
}

func isType(err error, typ string) bool {
	var e *Error
	return errors.As(err, &e) && e.Type == typ
}

func TestGoHelpersTakeTheirScopeAtTheCall(t *testing.T) {
	ex := testExecution()
	ctx := &wfContext{Context: context.Background(), sc: newScope(ex, "")}
	ids := make([]*Future[string], 3)
	for i := range ids {
		ids[i] = Go(ctx, func(c Context) (string, error) { return c.scope().nextStepID() })
	}
	got, err := Gather(ctx, ids...)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "t1/1" || got[1] != "t2/1" || got[2] != "t3/1" {
		t.Fatalf("got %v", got)
	}
}

func TestReplayReturnsRecordedOutcomesAndDetectsNonDeterminism(t *testing.T) {
	ex := testExecution(
		&pb.RecordedStep{StepId: "1", StepName: "a", Status: pb.StepStatus_STEP_STATUS_SUCCEEDED,
			Outcome: &pb.RecordedStep_Output{Output: &pb.Payload{Data: []byte(`{"n":7}`), Encoding: "json"}}},
		&pb.RecordedStep{StepId: "2", StepName: "b", Status: pb.StepStatus_STEP_STATUS_FAILED,
			Outcome: &pb.RecordedStep_Error{Error: &pb.ErrorInfo{Type: "builtins.ValueError", Message: "bad"}}},
		&pb.RecordedStep{StepId: "3", StepName: "c", Status: pb.StepStatus_STEP_STATUS_SUCCEEDED},
	)
	ctx := &wfContext{Context: context.Background(), sc: newScope(ex, "")}
	never := func(context.Context) (map[string]int, error) { t.Fatal("a recorded step ran"); return nil, nil }
	v, err := Step(ctx, "a", never)
	if err != nil || v["n"] != 7 {
		t.Fatalf("got %v %v", v, err)
	}
	_, err = Step(ctx, "b", never)
	if !isType(err, "builtins.ValueError") || err.(*Error).Message != "bad" {
		t.Fatalf("got %v", err)
	}
	_, err = Step(ctx, "not-c", never)
	var nd *NonDeterminismError
	if !errors.As(err, &nd) || nd.StepID != "3" || nd.RecordedName != "c" || nd.CalledName != "not-c" {
		t.Fatalf("got %v", err)
	}
	// The workflow fails with it even if its code carries on.
	if err := ex.checkRunning(); !errors.As(err, &nd) {
		t.Fatalf("got %v", err)
	}
	if info := errorInfo(err); info.Type != NonDeterminismErrorType || string(info.Details.Data) != `["wf-1","3","c","not-c"]` {
		t.Fatalf("got %v", info)
	}
}

func TestRetryPolicy(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 4, InitialInterval: 100 * time.Millisecond, BackoffFactor: 2, MaxInterval: 300 * time.Millisecond}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	for i, d := range want {
		if got := p.Delay(i + 1); got != d {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, d)
		}
	}
	boom := errors.New("boom")
	if !p.Retries(boom, 3) || p.Retries(boom, 4) {
		t.Error("MaxAttempts 4 retries after attempts 1 to 3 only")
	}
	if p.Retries(Permanent(boom), 1) {
		t.Error("a Permanent error is never retried")
	}
	p.NonRetryable = func(err error) bool { return errors.Is(err, boom) }
	if p.Retries(boom, 1) {
		t.Error("NonRetryable errors are not retried")
	}
	if (RetryPolicy{MaxAttempts: 0}).Retries(boom, 1) {
		t.Error("fewer than one attempt counts as one")
	}
	if typeName(Permanent(&SerializationError{What: "x", Err: boom})) != SerializationErrorType {
		t.Error("Permanent keeps the type name of what it wraps")
	}
}

func TestDecodeInput(t *testing.T) {
	cases := map[string]string{
		`{"args": [5], "kwargs": {}}`:      `5`,
		`{"args": [1, 2], "kwargs": {}}`:   `[1,2]`,
		`{"args": [], "kwargs": {"n": 3}}`: `{"n":3}`,
		`[9]`:                              `9`,
		`null`:                             `null`,
		`{"args": [{"name": "x"}], "kwargs": {}}`: `{"name":"x"}`,
	}
	for in, want := range cases {
		var got any
		if err := decodeInput(&pb.Payload{Data: []byte(in), Encoding: "json"}, &got); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		b, _ := encodeJSON(got)
		if string(b) != want {
			t.Errorf("%s: got %s, want %s", in, b, want)
		}
	}
	var n int
	if err := decodeInput(&pb.Payload{Data: []byte(`{"args": ["x"]}`)}, &n); !isSerialization(err) {
		t.Errorf("got %v", err)
	}
	p, _ := encodeArgs([]any{"<a&b>"}, "input", 0)
	if string(p.Data) != `{"args":["<a&b>"],"kwargs":{}}` {
		t.Errorf("got %s", p.Data)
	}
	if _, err := encode(make([]byte, 100), "big", 10); !isSerialization(err) {
		t.Errorf("an oversized payload must be refused, got %v", err)
	}
}

func isSerialization(err error) bool {
	var s *SerializationError
	return errors.As(err, &s)
}

func TestConversions(t *testing.T) {
	if statusOf(pb.WorkflowStatus_WORKFLOW_STATUS_MAX_RECOVERY_ATTEMPTS_EXCEEDED) != StatusMaxRecoveryAttemptsExceeded {
		t.Error("status names")
	}
	if statusToPB(StatusPaused) != pb.WorkflowStatus_WORKFLOW_STATUS_PAUSED || !StatusPaused.Final() || StatusRunning.Final() {
		t.Error("status round trip")
	}
	s := stepInfo(&pb.StepInfo{StepId: "t1/2", Kind: pb.StepKind_STEP_KIND_GET_EVENT, Status: pb.StepStatus_STEP_STATUS_WAITING})
	if s.Kind != "GET_EVENT" || s.Status != "WAITING" || !s.CompletedAt.IsZero() {
		t.Errorf("got %+v", s)
	}
	err := rpcError(status.Error(codes.NotFound, "workflow 'x' does not exist"))
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Errorf("got %v", err)
	}
	if !errors.Is(rpcError(status.Error(codes.FailedPrecondition, "finished")), ErrFinished) {
		t.Error("FAILED_PRECONDITION from Send is ErrFinished")
	}
	failed := outcome(WorkflowInfo{ID: "w", Status: StatusFailed, Error: &Error{Type: "builtins.KeyError", Message: "k"}}, nil)
	var wf *WorkflowFailedError
	if !errors.As(failed, &wf) || wf.Err.Type != "builtins.KeyError" {
		t.Errorf("got %v", failed)
	}
	var out []int
	if err := outcome(WorkflowInfo{Status: StatusSucceeded, Output: []byte(`[1,2]`)}, &out); err != nil || len(out) != 2 {
		t.Errorf("got %v %v", out, err)
	}
}

func TestFramesStayUnderTheLimitAndCoveredStartsAreDropped(t *testing.T) {
	var events []*pb.WorkerEvent
	for i := range 10 {
		id := string(rune('a' + i))
		events = append(events,
			&pb.WorkerEvent{Kind: &pb.WorkerEvent_StepStart{StepStart: &pb.StepStart{WorkflowId: "w", StepId: id}}},
			&pb.WorkerEvent{Kind: &pb.WorkerEvent_StepResult{StepResult: &pb.StepResult{WorkflowId: "w", StepId: id,
				Outcome: &pb.StepResult_Output{Output: &pb.Payload{Data: make([]byte, 100)}}}}})
	}
	events = append(events, &pb.WorkerEvent{Kind: &pb.WorkerEvent_StepStart{StepStart: &pb.StepStart{WorkflowId: "w", StepId: "open"}}})
	kept := withoutCoveredStarts(events)
	if len(kept) != 11 || kept[10].GetStepStart().GetStepId() != "open" {
		t.Fatalf("kept %d events", len(kept))
	}
	fs := frames(kept, 400)
	total := 0
	for _, f := range fs {
		total += len(f.Events)
		if len(f.Events) > 3 {
			t.Errorf("a frame of %d events is over the limit", len(f.Events))
		}
	}
	if total != 11 || len(fs) < 4 {
		t.Errorf("%d events in %d frames", total, len(fs))
	}
}

func sleepFor(d time.Duration) *pb.WorkerEvent {
	return &pb.WorkerEvent{Kind: &pb.WorkerEvent_Wait{Wait: &pb.Wait{Condition: &pb.Wait_Sleep{Sleep: &pb.SleepCondition{
		Wake: &pb.SleepCondition_Duration{Duration: durationpb.New(d)}}}}}}
}

func TestAWaitIsSentWithWhatIsLeftOfItSinceTheCall(t *testing.T) {
	var c waitClock
	sleep, old := sleepFor(2*time.Second), sleepFor(time.Second)
	recv := &pb.WorkerEvent{Kind: &pb.WorkerEvent_Wait{Wait: &pb.Wait{Condition: &pb.Wait_Recv{Recv: &pb.RecvCondition{
		Timeout: durationpb.New(10 * time.Second)}}}}}
	until := &pb.WorkerEvent{Kind: &pb.WorkerEvent_Wait{Wait: &pb.Wait{Condition: &pb.Wait_Sleep{Sleep: &pb.SleepCondition{
		Wake: &pb.SleepCondition_Until{Until: timestamppb.New(time.Unix(1e9, 0))}}}}}}
	forever := &pb.WorkerEvent{Kind: &pb.WorkerEvent_Wait{Wait: &pb.Wait{Condition: &pb.Wait_Recv{Recv: &pb.RecvCondition{}}}}}
	uncounted := sleepFor(2 * time.Second)
	c.start(sleep, time.Now().Add(-1500*time.Millisecond)) // called 1.5 s ago
	c.start(old, time.Now().Add(-3*time.Second))           // older than its duration
	c.start(recv, time.Now().Add(-4*time.Second))
	c.start(until, time.Now().Add(-5*time.Second))
	c.start(forever, time.Now().Add(-5*time.Second))
	events := []*pb.WorkerEvent{sleep, old, recv, until, forever, uncounted}
	sent := frames(c.sent(events, time.Now()), 0)[0].GetEvents()

	if got := sent[0].GetWait().GetSleep().GetDuration().AsDuration(); got <= 300*time.Millisecond || got > 500*time.Millisecond {
		t.Errorf("a 2 s sleep called 1.5 s ago is sent with %v left", got)
	}
	if got := sent[1].GetWait().GetSleep().GetDuration(); got == nil || got.AsDuration() != 0 {
		t.Errorf("a sleep older than its duration is sent with %v left, not zero", got)
	}
	if got := sent[2].GetWait().GetRecv().GetTimeout().AsDuration(); got <= 5800*time.Millisecond || got > 6*time.Second {
		t.Errorf("a 10 s timeout called 4 s ago is sent with %v left", got)
	}
	if got := sent[3].GetWait().GetSleep().GetUntil().AsTime(); !got.Equal(time.Unix(1e9, 0)) {
		t.Errorf("a sleep until a time is sent as %v", got)
	}
	if sent[4].GetWait().GetRecv().GetTimeout() != nil || sent[5].GetWait().GetSleep().GetDuration().AsDuration() != 2*time.Second {
		t.Error("a wait with no timeout, or no call time, is sent as it is")
	}
	// What is kept for a resend keeps its whole duration; a resend counts from the call too.
	if sleep.GetWait().GetSleep().GetDuration().AsDuration() != 2*time.Second {
		t.Error("sent changed the event kept for resending")
	}
	resent := c.sent(events, time.Now().Add(200*time.Millisecond))[0].GetWait().GetSleep().GetDuration().AsDuration()
	if resent <= 100*time.Millisecond || resent > 300*time.Millisecond {
		t.Errorf("resent 0.2 s later with %v left", resent)
	}
	c.done(sleep)
	if c.sent(events, time.Now())[0] != sleep {
		t.Error("a wait that is done is sent as it is")
	}
}

func TestOperationsRecordWhenTheWorkflowCalledTheWait(t *testing.T) {
	ex := testExecution()
	ex.w.session = newSession(ex.w, nil) // queues what is sent; never connects
	ended := make(chan error, 1)
	go func() { // the workflow's goroutine: it owns its root scope
		ended <- Sleep(&wfContext{Context: context.Background(), sc: newScope(ex, "")}, 2*time.Second)
	}()
	var queued []*pb.WorkerEvent
	for deadline := time.Now().Add(5 * time.Second); len(queued) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		ex.w.session.mu.Lock()
		queued = append(queued, ex.w.session.outbox...)
		ex.w.session.mu.Unlock()
	}
	if len(queued) == 0 || queued[0].GetWait() == nil { // then Idle, maybe
		t.Fatalf("queued %v", queued)
	}
	// Encoded 1.5 s after the call (as if the Wait had sat behind a busy writer).
	sent := ex.w.session.waits.sent(queued, time.Now().Add(1500*time.Millisecond))
	if got := sent[0].GetWait().GetSleep().GetDuration().AsDuration(); got <= 300*time.Millisecond || got > 500*time.Millisecond {
		t.Errorf("sent with %v left", got)
	}
	ex.stop(errors.New("test over"))
	if err := <-ended; err == nil {
		t.Error("Sleep returned no error for a stopped execution")
	}
	if ex.w.session.waits.sent(queued, time.Now())[0] != queued[0] {
		t.Error("the wait is not forgotten once its call returned")
	}
}
