package stepline

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Context is what workflow code gets: a context.Context (cancelled when this worker
// loses the execution, with ErrAbandoned as its cause) plus the workflow's step scope.
// Pass it to Step, Sleep, Recv, ... from the goroutine that owns it: the workflow
// function's, or the one Go started for a helper.
type Context interface {
	context.Context
	// WorkflowID is the running workflow's ID.
	WorkflowID() string
	// Go runs fn in a goroutine of its own with a scope of its own, taken now (at the
	// call): the helper's steps get IDs "t<n>/1", "t<n>/2", ... where n counts the
	// helpers this scope started. Wait for it with the returned future.
	Go(fn func(ctx Context) error) *Future[struct{}]

	scope() *scope
}

// scope holds the step and helper counters of one piece of workflow code, owned by one
// goroutine. IDs: "3" is the third call of the workflow function itself, "t2/1" the
// first call of the second helper it started, "t2/t1/4" deeper still.
type scope struct {
	ex     *execution
	prefix string
	steps  int
	tasks  int
	owner  atomic.Int64 // the goroutine that may take IDs from it
}

func newScope(ex *execution, prefix string) *scope {
	s := &scope{ex: ex, prefix: prefix}
	s.owner.Store(goroutineID())
	return s
}

// nextStepID takes the next step ID; only the owning goroutine may.
func (s *scope) nextStepID() (string, error) {
	if err := s.owned(); err != nil {
		return "", err
	}
	s.steps++
	return s.prefix + strconv.Itoa(s.steps), nil
}

// child makes the scope of a new helper.
func (s *scope) child() (*scope, error) {
	if err := s.owned(); err != nil {
		return nil, err
	}
	s.tasks++
	return &scope{ex: s.ex, prefix: s.prefix + "t" + strconv.Itoa(s.tasks) + "/"}, nil
}

func (s *scope) owned() error {
	if s.ex != nil && goroutineID() != s.owner.Load() {
		err := fmt.Errorf("%w: the Context of scope %q was used from another goroutine; start helpers with ctx.Go", ErrScope, s.prefix)
		return s.ex.failWith(&Error{Type: ScopeErrorType, Message: err.Error()})
	}
	return nil
}

// goroutineID is the running goroutine's number, from its stack header "goroutine N [".
func goroutineID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}

type wfContext struct {
	context.Context
	sc *scope
}

func (c *wfContext) WorkflowID() string { return c.sc.ex.id }
func (c *wfContext) scope() *scope      { return c.sc }

func (c *wfContext) Go(fn func(ctx Context) error) *Future[struct{}] {
	return Go(c, func(ctx Context) (struct{}, error) { return struct{}{}, fn(ctx) })
}

// Go runs fn as a helper with a scope of its own, taken at the call (see Context.Go),
// and returns a future of its result.
func Go[T any](ctx Context, fn func(ctx Context) (T, error)) *Future[T] {
	f := newFuture[T]()
	child, err := ctx.scope().child()
	if err != nil {
		f.set(*new(T), err)
		return f
	}
	hc := &wfContext{Context: ctx, sc: child}
	go func() {
		child.owner.Store(goroutineID())
		var v T
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = panicError(r)
			}
			f.set(v, err)
		}()
		v, err = fn(hc)
	}()
	return f
}

// Awaitable is anything Wait can wait for: every *Future.
type Awaitable interface {
	Done() <-chan struct{}
	Err() error
}

// Future is the eventual result of a step started with StepAsync, or of a helper.
type Future[T any] struct {
	done chan struct{}
	once sync.Once
	val  T
	err  error
}

func newFuture[T any]() *Future[T] { return &Future[T]{done: make(chan struct{})} }

func (f *Future[T]) set(v T, err error) {
	f.once.Do(func() { f.val, f.err = v, err; close(f.done) })
}

// Done is closed when the result is there.
func (f *Future[T]) Done() <-chan struct{} { return f.done }

// Err is the future's error once Done (nil before).
func (f *Future[T]) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// Get waits for the result, or for ctx to end.
func (f *Future[T]) Get(ctx context.Context) (T, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		return *new(T), context.Cause(ctx)
	}
}

// Wait waits for every future and returns the first error in the order given (not in
// the order they finished, so that the outcome is the same on a replay).
func Wait(ctx context.Context, fs ...Awaitable) error {
	for _, f := range fs {
		select {
		case <-f.Done():
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for _, f := range fs {
		if err := f.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Gather waits for every future and returns their values in order, or the first error.
func Gather[T any](ctx context.Context, fs ...*Future[T]) ([]T, error) {
	out := make([]T, len(fs))
	for i, f := range fs {
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		out[i] = f.val
	}
	for _, f := range fs {
		if f.err != nil {
			return nil, f.err
		}
	}
	return out, nil
}

func panicError(r any) error {
	return &Error{Type: "go.panic", Message: fmt.Sprint(r)}
}

// stepCtxKey carries StepContext into step bodies.
type stepCtxKey struct{}

// StepContext says which step a step body is running as.
type StepContext struct {
	WorkflowID, StepID, StepName string
	Attempt                      int32
}

// CurrentStep is the step whose body got ctx (ok false outside step bodies).
func CurrentStep(ctx context.Context) (StepContext, bool) {
	info, ok := ctx.Value(stepCtxKey{}).(StepContext)
	return info, ok
}
