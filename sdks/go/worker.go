package stepline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/grpc"
)

// Version is the SDK's version, sent in Register for operators.
const Version = "0.1.0"

// Worker serves workflows written in Go: it registers their names with the coordinator,
// runs what it is assigned, and streams step starts and results over one stream.
type Worker struct {
	address      string
	apiKey       string
	id           string
	capacity     int
	suspendAfter time.Duration // negative: never
	grace        time.Duration
	dialOpts     []grpc.DialOption
	log          *slog.Logger

	defs    map[string]*workflowDef
	session *session
	ready   chan struct{}

	mu         sync.Mutex
	executions map[string]*execution
	running    int // step bodies running
	progress   chan struct{}
}

// WorkerOption configures a Worker.
type WorkerOption func(*Worker)

// WithWorkerID sets the worker's ID (default: STEPLINE_WORKER_ID, else host-pid-random).
func WithWorkerID(id string) WorkerOption { return func(w *Worker) { w.id = id } }

// WithCapacity sets how many executions the coordinator may assign at once (default 100).
func WithCapacity(n int) WorkerOption { return func(w *Worker) { w.capacity = max(n, 1) } }

// WithSuspendAfter gives a waiting execution back to the coordinator after d of waiting
// (default 5 s); a negative d keeps it in memory.
func WithSuspendAfter(d time.Duration) WorkerOption { return func(w *Worker) { w.suspendAfter = d } }

// WithDrainGrace is how long Run waits, on shutdown, for step results to be acknowledged.
func WithDrainGrace(d time.Duration) WorkerOption { return func(w *Worker) { w.grace = d } }

// WithWorkerAPIKey sends "authorization: Bearer <key>" (default: STEPLINE_API_KEY).
func WithWorkerAPIKey(key string) WorkerOption { return func(w *Worker) { w.apiKey = key } }

// WithWorkerDialOptions adds gRPC dial options.
func WithWorkerDialOptions(opts ...grpc.DialOption) WorkerOption {
	return func(w *Worker) { w.dialOpts = append(w.dialOpts, opts...) }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) WorkerOption { return func(w *Worker) { w.log = l } }

// NewWorker makes a worker for the coordinator at address; register workflows, then Run.
func NewWorker(address string, opts ...WorkerOption) *Worker {
	w := &Worker{
		address: address, capacity: 100, suspendAfter: 5 * time.Second, grace: 10 * time.Second,
		log: slog.Default(), defs: map[string]*workflowDef{}, ready: make(chan struct{}),
		executions: map[string]*execution{}, progress: make(chan struct{}, 1),
	}
	for _, opt := range opts {
		opt(w)
	}
	if w.id == "" {
		w.id = os.Getenv("STEPLINE_WORKER_ID")
	}
	if w.id == "" {
		host, _ := os.Hostname()
		w.id = fmt.Sprintf("%s-%d-%06x", host, os.Getpid(), time.Now().UnixNano()&0xffffff)
	}
	return w
}

// ID is the worker's ID.
func (w *Worker) ID() string { return w.id }

// Ready is closed once the worker first registered.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

func (w *Worker) register(def *workflowDef) {
	if w.session != nil {
		panic("stepline: register workflows before Run")
	}
	w.defs[def.name] = def
}

// Run connects, registers and serves until ctx ends; then it drains (assigned nothing
// more, it waits up to the drain grace for running steps to be acknowledged) and returns.
// It returns an error at once when the coordinator refuses the worker for good (a wrong
// API key, an unsupported protocol version).
func (w *Worker) Run(ctx context.Context) error {
	if len(w.defs) == 0 {
		return errors.New("stepline: no workflows registered")
	}
	conn, err := dial(w.address, w.apiKey, w.dialOpts)
	if err != nil {
		return err
	}
	defer conn.Close()
	w.session = newSession(w, pb.NewWorkerServiceClient(conn))
	streamCtx, stop := context.WithCancel(context.Background())
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- w.session.run(streamCtx) }()
	go func() {
		select {
		case <-w.session.registered:
			close(w.ready)
		case <-streamCtx.Done():
		}
	}()
	select {
	case err := <-ended:
		return err
	case <-ctx.Done():
	}
	w.drain()
	stop()
	<-ended
	w.mu.Lock()
	for _, ex := range w.executions {
		ex.stop(fmt.Errorf("%w: worker stopped", ErrAbandoned))
	}
	w.executions = map[string]*execution{}
	w.mu.Unlock()
	return nil
}

// drain tells the coordinator to assign nothing more and waits for in-flight work.
func (w *Worker) drain() {
	w.session.draining.Store(true)
	w.session.send(&pb.WorkerEvent{Kind: &pb.WorkerEvent_Drain{Drain: &pb.Drain{}}})
	deadline := time.After(w.grace)
	for !w.settled() {
		select {
		case <-w.progress:
		case <-deadline:
			w.log.Warn("stepline: in-flight steps did not finish within the drain grace", "worker", w.id)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *Worker) settled() bool {
	w.mu.Lock()
	running := w.running
	exs := make([]*execution, 0, len(w.executions))
	for _, ex := range w.executions {
		exs = append(exs, ex)
	}
	w.mu.Unlock()
	if running > 0 {
		return false
	}
	for _, ex := range exs {
		if !ex.settled() {
			return false
		}
	}
	return true
}

func (w *Worker) progressed() {
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

func (w *Worker) bodies(delta int) {
	w.mu.Lock()
	w.running += delta
	w.mu.Unlock()
	w.progressed()
}

// forget drops an execution that gave itself back.
func (w *Worker) forget(ex *execution) {
	w.mu.Lock()
	if w.executions[ex.id] == ex {
		delete(w.executions, ex.id)
	}
	w.mu.Unlock()
	w.progressed()
}

// opening is what opens every stream: Register with what this worker still runs, and
// everything not yet acknowledged.
func (w *Worker) opening() []*pb.WorkerEvent {
	names := make([]string, 0, len(w.defs))
	for name := range w.defs {
		names = append(names, name)
	}
	sort.Strings(names)
	reg := &pb.Register{WorkerId: w.id, WorkflowNames: names, Capacity: uint32(w.capacity), Language: "go",
		SdkVersion: Version, ProtocolVersion: uint32(pb.ProtocolVersion_PROTOCOL_VERSION_1)}
	w.mu.Lock()
	live := make([]*execution, 0, len(w.executions))
	for _, id := range sortedKeys(w.executions) {
		live = append(live, w.executions[id])
	}
	w.mu.Unlock()
	var resend []*pb.WorkerEvent
	for _, ex := range live {
		reg.Held = append(reg.Held, &pb.ExecutionRef{WorkflowId: ex.id, Epoch: ex.epoch})
		resend = append(resend, ex.pending()...)
	}
	return append([]*pb.WorkerEvent{{Kind: &pb.WorkerEvent_Register{Register: reg}}}, resend...)
}

// current is the execution an event is about, if its epoch is the one held.
func (w *Worker) current(id string, epoch int64) *execution {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ex := w.executions[id]; ex != nil && ex.epoch == epoch {
		return ex
	}
	return nil
}

// handle routes the coordinator's events, in order; it never blocks on workflow code.
func (w *Worker) handle(events []*pb.CoordinatorEvent) {
	for _, ev := range events {
		switch k := ev.GetKind().(type) {
		case *pb.CoordinatorEvent_HeartbeatAck:
			w.session.heartbeatAcked(k.HeartbeatAck.GetSequence())
		case *pb.CoordinatorEvent_Assignment:
			w.assign(k.Assignment)
		case *pb.CoordinatorEvent_StepAck:
			if ex := w.current(k.StepAck.GetWorkflowId(), k.StepAck.GetEpoch()); ex != nil {
				ex.stepAcked(k.StepAck.GetStepId())
			}
		case *pb.CoordinatorEvent_StepDone:
			if ex := w.current(k.StepDone.GetWorkflowId(), k.StepDone.GetEpoch()); ex != nil {
				ex.stepDone(k.StepDone)
			}
		case *pb.CoordinatorEvent_WorkflowAck:
			if ex := w.current(k.WorkflowAck.GetWorkflowId(), k.WorkflowAck.GetEpoch()); ex != nil {
				w.forget(ex)
				ex.stop(fmt.Errorf("%w: workflow finished", ErrAbandoned)) // ends helpers left running
			}
		case *pb.CoordinatorEvent_Abandon:
			a := k.Abandon
			if ex := w.current(a.GetWorkflowId(), a.GetEpoch()); ex != nil {
				w.forget(ex)
				w.log.Info("stepline: execution abandoned", "workflow", ex.id, "epoch", ex.epoch, "reason", a.GetReason(), "message", a.GetMessage())
				ex.stop(fmt.Errorf("%w: %s: %s", ErrAbandoned, a.GetReason(), a.GetMessage()))
			}
		case *pb.CoordinatorEvent_Rejected:
			r := k.Rejected
			if ex := w.current(r.GetWorkflowId(), r.GetEpoch()); ex != nil {
				ex.rejected(r.GetStepId(), r.GetStatus().GetMessage())
			} else {
				w.log.Warn("stepline: the coordinator rejected an event", "workflow", r.GetWorkflowId(), "message", r.GetStatus().GetMessage())
			}
		}
		// Registered comes first on a stream and is taken by the session; StartResult
		// answers in-process starts, which this SDK does not make; others are unknown.
	}
}

func (w *Worker) assign(a *pb.Assignment) {
	def := w.defs[a.GetWorkflowName()]
	if def == nil { // the coordinator only sends registered names
		w.log.Error("stepline: assigned an unknown workflow; giving it back", "name", a.GetWorkflowName())
		w.session.send(&pb.WorkerEvent{Kind: &pb.WorkerEvent_Release{Release: &pb.ReleaseExecution{
			WorkflowId: a.GetWorkflowId(), Epoch: a.GetEpoch()}}})
		return
	}
	ex := newExecution(w, def, a)
	w.mu.Lock()
	previous := w.executions[ex.id]
	w.executions[ex.id] = ex
	w.mu.Unlock()
	if previous != nil {
		previous.stop(fmt.Errorf("%w: reassigned to this worker under epoch %d", ErrAbandoned, a.GetEpoch()))
	}
	go ex.run()
}
