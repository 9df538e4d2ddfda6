package stepline

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// session keeps one registered stream to the coordinator at a time: it registers (with
// what the worker still holds and everything not yet acknowledged), reconnects with
// jittered backoff, sends heartbeats and keeps the lease. Everything queued while the
// writer is busy leaves as one frame, split only to stay within the message limit.
type session struct {
	w    *Worker
	stub pb.WorkerServiceClient // its channel sends the API key, if any

	mu     sync.Mutex
	outbox []*pb.WorkerEvent
	wake   chan struct{}
	waits  waitClock // a wait is sent with what is left of it (waits.go)

	limits     atomic.Pointer[pb.Limits]
	registered chan struct{}
	regOnce    sync.Once
	draining   atomic.Bool

	leaseMu       sync.Mutex
	lease         time.Duration
	heartbeat     time.Duration
	leaseDeadline time.Time
	renewed       chan struct{} // closed (and replaced) when the lease is renewed
	heartbeats    map[uint64]time.Time
}

func newSession(w *Worker, stub pb.WorkerServiceClient) *session {
	return &session{
		w: w, stub: stub, wake: make(chan struct{}, 1), registered: make(chan struct{}),
		lease: 3 * time.Second, heartbeat: time.Second, renewed: make(chan struct{}), heartbeats: map[uint64]time.Time{},
	}
}

// send queues an event for the coordinator.
func (s *session) send(events ...*pb.WorkerEvent) {
	s.mu.Lock()
	s.outbox = append(s.outbox, events...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) maxPayload() uint64 { return s.limits.Load().GetMaxPayloadBytes() }

// --- the lease ---------------------------------------------------------------------------

// leaseHeld returns at once while the lease is current (and the worker is not draining);
// otherwise it waits until the lease is renewed or ctx ends.
func (s *session) leaseHeld(ctx context.Context) error {
	for {
		s.leaseMu.Lock()
		ok := time.Now().Before(s.leaseDeadline) && !s.draining.Load()
		renewed := s.renewed
		s.leaseMu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-renewed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// renew moves the lease deadline to sentAt + lease: counted from when the acknowledged
// message was sent, so that it never outlasts the coordinator's own view.
func (s *session) renew(sentAt time.Time) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if d := sentAt.Add(s.lease); d.After(s.leaseDeadline) {
		s.leaseDeadline = d
		close(s.renewed)
		s.renewed = make(chan struct{})
	}
}

func (s *session) heartbeatAcked(seq uint64) {
	s.leaseMu.Lock()
	sentAt, ok := s.heartbeats[seq]
	for k := range s.heartbeats {
		if k <= seq {
			delete(s.heartbeats, k)
		}
	}
	s.leaseMu.Unlock()
	if ok {
		s.renew(sentAt)
	}
}

// --- the stream --------------------------------------------------------------------------

// fatalCodes end the worker when they come before it ever registered: reconnecting
// cannot help while nothing changes on the coordinator's side.
var fatalCodes = map[codes.Code]bool{codes.Unauthenticated: true, codes.InvalidArgument: true, codes.FailedPrecondition: true}

// run keeps a session open until ctx ends.
func (s *session) run(ctx context.Context) error {
	delay := 50 * time.Millisecond
	for ctx.Err() == nil {
		registered, err := s.once(ctx)
		if registered {
			delay = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return nil
		}
		if st, ok := status.FromError(err); ok && fatalCodes[st.Code()] && !s.isRegistered() {
			return rpcError(err)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.w.log.Warn("stepline: worker stream ended", "worker", s.w.id, "error", err)
		}
		jittered := time.Duration(float64(delay) * (0.5 + rand.Float64()))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jittered):
		}
		delay = min(delay*2, 2*time.Second)
	}
	return nil
}

func (s *session) isRegistered() bool {
	select {
	case <-s.registered:
		return true
	default:
		return false
	}
}

// once is one stream, from Register to its end; it reports whether it registered.
func (s *session) once(parent context.Context) (bool, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stream, err := s.stub.Connect(ctx)
	if err != nil {
		return false, err
	}
	// Register first, then everything not yet acknowledged: the coordinator re-attaches
	// what is still ours and takes these; it refuses (by epoch) what was reassigned.
	opening := s.w.opening()
	sentAt := time.Now()
	maxBytes := uint64(4 << 20)
	if l := s.limits.Load(); l != nil {
		maxBytes = l.GetMaxMessageBytes()
	}
	for _, frame := range frames(s.waits.sent(opening, time.Now()), maxBytes) {
		if err := stream.Send(frame); err != nil {
			return false, err
		}
	}
	first, err := stream.Recv()
	if err != nil {
		return false, err
	}
	events := first.GetEvents()
	if len(events) == 0 || events[0].GetRegistered() == nil {
		return false, status.Error(codes.Internal, "the coordinator did not answer Register with Registered")
	}
	reg := events[0].GetRegistered()
	s.leaseMu.Lock()
	s.lease = time.Duration(reg.GetLeaseMs()) * time.Millisecond
	s.heartbeat = max(time.Duration(reg.GetHeartbeatIntervalMs())*time.Millisecond, 10*time.Millisecond)
	s.leaseMu.Unlock()
	s.limits.Store(reg.GetLimits())
	s.renew(sentAt)
	s.regOnce.Do(func() { close(s.registered) })
	s.w.log.Info("stepline: worker registered", "worker", s.w.id, "session", reg.GetSessionId())

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.write(ctx, cancel, stream) }()
	go func() { defer wg.Done(); s.beat(ctx) }()
	defer wg.Wait()
	defer cancel()
	s.w.handle(events[1:])
	for {
		frame, err := stream.Recv()
		if err != nil {
			return true, err
		}
		s.w.handle(frame.GetEvents())
	}
}

func (s *session) write(ctx context.Context, cancel context.CancelFunc, stream pb.WorkerService_ConnectClient) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		events := s.outbox
		s.outbox = nil
		s.mu.Unlock()
		if len(events) == 0 {
			continue
		}
		events = s.waits.sent(withoutCoveredStarts(events), time.Now())
		for _, frame := range frames(events, s.limits.Load().GetMaxMessageBytes()) {
			if err := stream.Send(frame); err != nil {
				cancel() // the reader then ends the stream; the opening of the next resends
				return
			}
		}
	}
}

func (s *session) beat(ctx context.Context) {
	var seq uint64
	for {
		s.leaseMu.Lock()
		every := s.heartbeat
		s.leaseMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		seq++
		s.leaseMu.Lock()
		s.heartbeats[seq] = time.Now()
		s.leaseMu.Unlock()
		s.send(&pb.WorkerEvent{Kind: &pb.WorkerEvent_Heartbeat{Heartbeat: &pb.Heartbeat{Sequence: seq}}})
	}
}

// frames splits events into frames below maxBytes (0: 4 MiB); an event larger than
// that goes alone (the coordinator then refuses it).
func frames(events []*pb.WorkerEvent, maxBytes uint64) []*pb.WorkerFrame {
	if maxBytes == 0 {
		maxBytes = 4 << 20
	}
	limit := int(maxBytes) - 64
	var out []*pb.WorkerFrame
	cur, size := &pb.WorkerFrame{}, 0
	for _, ev := range events {
		n := proto.Size(ev) + 8
		if len(cur.Events) > 0 && size+n > limit {
			out = append(out, cur)
			cur, size = &pb.WorkerFrame{}, 0
		}
		cur.Events = append(cur.Events, ev)
		size += n
	}
	if len(cur.Events) > 0 {
		out = append(out, cur)
	}
	return out
}

// withoutCoveredStarts drops the StepStart of a step whose result leaves in the same
// batch: the result says all the start would, and the coordinator writes the step once.
func withoutCoveredStarts(events []*pb.WorkerEvent) []*pb.WorkerEvent {
	type key struct{ wf, step string }
	finished := map[key]bool{}
	for _, ev := range events {
		if r := ev.GetStepResult(); r != nil {
			finished[key{r.GetWorkflowId(), r.GetStepId()}] = true
		}
	}
	if len(finished) == 0 {
		return events
	}
	out := events[:0:0]
	for _, ev := range events {
		if st := ev.GetStepStart(); st != nil && finished[key{st.GetWorkflowId(), st.GetStepId()}] {
			continue
		}
		out = append(out, ev)
	}
	return out
}
