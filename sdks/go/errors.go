package stepline

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error type names recorded by the SDKs (ErrorInfo.type) that this SDK produces or reads.
const (
	NonDeterminismErrorType     = "stepline.NonDeterminismError"
	SerializationErrorType      = "stepline.SerializationError"
	ScopeErrorType              = "stepline.ScopeError"
	WorkflowNotFoundErrorType   = "stepline.WorkflowNotFoundError"
	WorkflowFinishedErrorType   = "stepline.WorkflowFinishedError"
	WorkflowCancelledErrorType  = "stepline.WorkflowCancelledError"
	WorkflowTimedOutErrorType   = "stepline.WorkflowTimedOutError"
	WorkflowConflictErrorType   = "stepline.WorkflowConflictError"
	MaxRecoveryAttemptsExceeded = "stepline.MaxRecoveryAttemptsExceeded"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: no workflow has the ID (NOT_FOUND, or a recorded WorkflowNotFoundError).
	ErrNotFound = errors.New("stepline: workflow not found")
	// ErrConflict: the workflow ID belongs to a workflow of another name (ALREADY_EXISTS).
	ErrConflict = errors.New("stepline: workflow ID taken by another workflow")
	// ErrInvalidArgument: the coordinator refused a malformed request (INVALID_ARGUMENT).
	ErrInvalidArgument = errors.New("stepline: invalid argument")
	// ErrUnauthenticated: the API key is missing or wrong (UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("stepline: unauthenticated")
	// ErrUnavailable: the coordinator or its database cannot be reached (UNAVAILABLE).
	ErrUnavailable = errors.New("stepline: coordinator unavailable")
	// ErrFinished: the workflow has finished (a message sent to it would never be read).
	ErrFinished = errors.New("stepline: workflow finished")
	// ErrAbandoned: the execution was taken from this worker (reassigned, cancelled,
	// timed out or suspended); the workflow code's context is cancelled with it as cause.
	ErrAbandoned = errors.New("stepline: execution abandoned")
	// ErrScope: a step was called from a goroutine that does not own the Context's scope.
	ErrScope = errors.New("stepline: step called outside its scope's goroutine")
	// ErrNotInWorkflow: a workflow-only call got a context that is no workflow's.
	ErrNotInWorkflow = errors.New("stepline: not in a workflow")
)

// RPCError is a failed coordinator call: its gRPC status code and message. It matches
// the sentinel of its code with errors.Is (ErrNotFound for NOT_FOUND, ...).
type RPCError struct {
	Code    codes.Code
	Message string
}

func (e *RPCError) Error() string { return fmt.Sprintf("stepline: %s: %s", e.Code, e.Message) }

// Is maps status codes to the sentinels.
func (e *RPCError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == codes.NotFound
	case ErrConflict:
		return e.Code == codes.AlreadyExists
	case ErrInvalidArgument:
		return e.Code == codes.InvalidArgument
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrFinished:
		return e.Code == codes.FailedPrecondition
	}
	return false
}

// rpcError turns a gRPC error into an *RPCError (context errors are kept as they are).
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errCtxCanceled) || errors.Is(err, errCtxDeadline) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &RPCError{Code: s.Code(), Message: s.Message()}
}

// Error is a recorded failure (ErrorInfo): a step's or a workflow's error as stored by the
// coordinator, whatever language raised it. Workflow code gets one back from a step whose
// failure was recorded, on the first run and on every replay.
type Error struct {
	// Type is the error's type as its language names it ("builtins.ValueError",
	// "stepline.NonDeterminismError", "main.PaymentDeclined").
	Type string
	// Message is the human-readable message.
	Message string
	// Traceback is the stack trace as text, for people.
	Traceback string
	// Details is SDK-defined JSON (the Python SDK stores constructor arguments).
	Details []byte
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Is matches the sentinels a recorded type stands for.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Type == WorkflowNotFoundErrorType
	case ErrFinished:
		return e.Type == WorkflowFinishedErrorType
	case ErrConflict:
		return e.Type == WorkflowConflictErrorType
	}
	return false
}

// Typed lets an error choose the type name it is recorded under.
type Typed interface {
	ErrorType() string
}

// NonDeterminismError: a replay reached a recorded step ID under another step name.
type NonDeterminismError struct {
	WorkflowID, StepID, RecordedName, CalledName string
}

func (e *NonDeterminismError) Error() string {
	return fmt.Sprintf("non-determinism in workflow %q: step %q was recorded as %q but the code now calls %q there",
		e.WorkflowID, e.StepID, e.RecordedName, e.CalledName)
}

// ErrorType implements Typed.
func (e *NonDeterminismError) ErrorType() string { return NonDeterminismErrorType }

// WorkflowFailedError: a workflow awaited by the client ended other than SUCCEEDED.
type WorkflowFailedError struct {
	WorkflowID string
	Status     Status
	// The recorded error (Type is the status name when none was recorded).
	Err *Error
}

func (e *WorkflowFailedError) Error() string {
	return fmt.Sprintf("workflow %q ended %s: %s", e.WorkflowID, e.Status, e.Err)
}

// Unwrap gives the recorded error.
func (e *WorkflowFailedError) Unwrap() error { return e.Err }

// typeName is the name an error is recorded under.
func typeName(err error) string {
	var typed Typed
	if errors.As(err, &typed) {
		return typed.ErrorType()
	}
	var recorded *Error
	if errors.As(err, &recorded) {
		return recorded.Type
	}
	return strings.TrimLeft(reflect.TypeOf(err).String(), "*")
}

// errorInfo records an error.
func errorInfo(err error) *pb.ErrorInfo {
	info := &pb.ErrorInfo{Type: typeName(err), Message: err.Error()}
	var nd *NonDeterminismError
	if errors.As(err, &nd) {
		// As the Python SDK records it: its constructor arguments.
		details, _ := encodeJSON([]string{nd.WorkflowID, nd.StepID, nd.RecordedName, nd.CalledName})
		info.Details = &pb.Payload{Data: details, Encoding: "json"}
	}
	var recorded *Error
	if errors.As(err, &recorded) && recorded.Type == info.Type {
		info.Message, info.Traceback = recorded.Message, recorded.Traceback
	}
	return info
}

// fromErrorInfo is a recorded error as workflow code sees it.
func fromErrorInfo(info *pb.ErrorInfo) *Error {
	if info == nil {
		return &Error{Type: "stepline.UnknownError", Message: "no error recorded"}
	}
	e := &Error{Type: info.GetType(), Message: info.GetMessage(), Traceback: info.GetTraceback()}
	if d := info.GetDetails(); d != nil {
		e.Details = d.GetData()
	}
	return e
}
