package stepline

import (
	"sync"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A durable wait's duration (Sleep) or timeout (Recv, GetEvent) counts from the
// workflow's call: when its Wait is encoded for the stream, what is sent is what is left
// of it then, never less than zero (docs/protocol.md, "Durable operations"). A Wait that
// sat in this process first (behind a busy writer, a lost connection: it is resent after
// the reconnect) still ends when the workflow asked, not that much later. A sleep until
// a given time is sent as it is.

// waitClock is when the workflow called each of its waits not yet done. The event kept
// for resending keeps the whole duration; each encoding sends a copy with what is left.
type waitClock struct {
	mu     sync.Mutex
	called map[*pb.WorkerEvent]time.Time
}

// start records that the workflow called the wait ev at at (time.Now(): monotonic).
func (c *waitClock) start(ev *pb.WorkerEvent, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.called == nil {
		c.called = map[*pb.WorkerEvent]time.Time{}
	}
	c.called[ev] = at
}

// done forgets the wait ev: it has its outcome, or its execution stopped.
func (c *waitClock) done(ev *pb.WorkerEvent) {
	c.mu.Lock()
	delete(c.called, ev)
	c.mu.Unlock()
}

// sent is events as they are to be encoded now: each wait with a call time recorded and
// a duration or timeout is a copy with what is left of it; every other event is itself.
func (c *waitClock) sent(events []*pb.WorkerEvent, now time.Time) []*pb.WorkerEvent {
	var out []*pb.WorkerEvent // a copy of events once one of them changes
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ev := range events {
		at, ok := c.called[ev]
		if !ok {
			continue
		}
		if d := countdown(ev.GetWait()); d == nil || *d == nil {
			continue
		}
		if out == nil {
			out = append(events[:0:0], events...)
		}
		cp := proto.Clone(ev).(*pb.WorkerEvent)
		d := countdown(cp.GetWait())
		*d = left(*d, now.Sub(at))
		out[i] = cp
	}
	if out == nil {
		return events
	}
	return out
}

// countdown is the field of w that counts down from the call: a sleep's duration, a
// timeout; nil for a sleep until a given time (or no wait).
func countdown(w *pb.Wait) **durationpb.Duration {
	switch c := w.GetCondition().(type) {
	case *pb.Wait_Sleep:
		if d, ok := c.Sleep.GetWake().(*pb.SleepCondition_Duration); ok {
			return &d.Duration
		}
	case *pb.Wait_Recv:
		if c.Recv != nil {
			return &c.Recv.Timeout
		}
	case *pb.Wait_GetEvent:
		if c.GetEvent != nil {
			return &c.GetEvent.Timeout
		}
	case *pb.Wait_Workflow:
		if c.Workflow != nil {
			return &c.Workflow.Timeout
		}
	}
	return nil
}

// left is what is left of whole once elapsed has passed, never negative.
func left(whole *durationpb.Duration, elapsed time.Duration) *durationpb.Duration {
	return durationpb.New(max(whole.AsDuration()-elapsed, 0))
}
