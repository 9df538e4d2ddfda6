package stepline

import (
	"fmt"
	"reflect"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
)

// workflowDef is a registered workflow: it decodes its input, runs, encodes its output.
type workflowDef struct {
	name string
	run  func(ctx Context, input *pb.Payload, maxPayload uint64) (*pb.Payload, error)
}

// Register registers fn as the workflow name on w, with typed input and output.
func Register[T, R any](w *Worker, name string, fn func(ctx Context, input T) (R, error)) {
	w.register(&workflowDef{name: name, run: func(ctx Context, input *pb.Payload, maxPayload uint64) (out *pb.Payload, err error) {
		var in T
		if err := decodeInput(input, &in); err != nil {
			return nil, err
		}
		defer func() {
			if r := recover(); r != nil {
				out, err = nil, panicError(r)
			}
		}()
		value, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		return encode(value, fmt.Sprintf("the result of workflow %q", name), maxPayload)
	}})
}

var (
	contextType = reflect.TypeFor[Context]()
	errorType   = reflect.TypeFor[error]()
)

// Workflow registers fn as the workflow name. fn is func(stepline.Context, T) (R, error)
// or func(stepline.Context) (R, error), for any JSON types T and R (Register is the
// same, checked at compile time). It panics on any other signature.
func (w *Worker) Workflow(name string, fn any) {
	v := reflect.ValueOf(fn)
	t := v.Type()
	if t.Kind() != reflect.Func || t.NumIn() < 1 || t.NumIn() > 2 || t.In(0) != contextType ||
		t.NumOut() != 2 || t.Out(1) != errorType {
		panic(fmt.Sprintf("stepline: workflow %q must be func(stepline.Context[, T]) (R, error), not %s", name, t))
	}
	w.register(&workflowDef{name: name, run: func(ctx Context, input *pb.Payload, maxPayload uint64) (out *pb.Payload, err error) {
		args := []reflect.Value{reflect.ValueOf(ctx)}
		if t.NumIn() == 2 {
			in := reflect.New(t.In(1))
			if err := decodeInput(input, in.Interface()); err != nil {
				return nil, err
			}
			args = append(args, in.Elem())
		}
		defer func() {
			if r := recover(); r != nil {
				out, err = nil, panicError(r)
			}
		}()
		res := v.Call(args)
		if e := res[1].Interface(); e != nil {
			return nil, e.(error)
		}
		return encode(res[0].Interface(), fmt.Sprintf("the result of workflow %q", name), maxPayload)
	}})
}
