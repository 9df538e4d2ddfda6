package stepline

import (
	"context"
	"time"

	pb "github.com/stepline/stepline/sdks/go/gen/stepline/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Client talks to the coordinator's WorkflowService. Safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.WorkflowServiceClient
}

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

type clientOptions struct {
	apiKey string
	dial   []grpc.DialOption
}

// WithAPIKey sends "authorization: Bearer <key>"; without it STEPLINE_API_KEY is used if set.
func WithAPIKey(key string) ClientOption { return func(o *clientOptions) { o.apiKey = key } }

// WithDialOptions adds gRPC dial options (such as TLS transport credentials).
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dial = append(o.dial, opts...) }
}

// NewClient makes a client of the coordinator at address ("host:port"). It connects lazily.
func NewClient(address string, opts ...ClientOption) (*Client, error) {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	conn, err := dial(address, o.apiKey, o.dial)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, rpc: pb.NewWorkflowServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// StartOption configures a start.
type StartOption func(*pb.StartWorkflowRequest, *[]any)

// WithWorkflowID gives the workflow its ID: starting an existing ID starts nothing and
// returns that workflow (ErrConflict if it has another name).
func WithWorkflowID(id string) StartOption {
	return func(r *pb.StartWorkflowRequest, _ *[]any) { r.WorkflowId = id }
}

// WithTimeout makes the coordinator end the workflow TIMED_OUT this long after it is
// recorded, whether or not a worker runs it.
func WithTimeout(d time.Duration) StartOption {
	return func(r *pb.StartWorkflowRequest, _ *[]any) { r.Timeout = durationpb.New(d) }
}

// WithDeadline makes the coordinator end the workflow TIMED_OUT at t (with WithTimeout
// too, the earlier applies).
func WithDeadline(t time.Time) StartOption {
	return func(r *pb.StartWorkflowRequest, _ *[]any) { r.Deadline = timestamppb.New(t) }
}

// WithArgs replaces the input by these positional arguments (for workflows of other
// languages that take several; a Go workflow gets them as one JSON array).
func WithArgs(args ...any) StartOption {
	return func(_ *pb.StartWorkflowRequest, a *[]any) { *a = append([]any{}, args...) }
}

// Start starts the workflow registered as name, with input as its one argument (nil:
// no argument), and returns its handle.
func (c *Client) Start(ctx context.Context, name string, input any, opts ...StartOption) (*Handle, error) {
	var args []any
	if input != nil {
		args = []any{input}
	}
	req := &pb.StartWorkflowRequest{WorkflowName: name}
	for _, opt := range opts {
		opt(req, &args)
	}
	payload, err := encodeArgs(args, "the input of workflow "+name, 0)
	if err != nil {
		return nil, err
	}
	req.Input = payload
	r, err := c.rpc.StartWorkflow(ctx, req)
	if err != nil {
		return nil, rpcError(err)
	}
	return &Handle{c: c, ID: r.GetWorkflow().GetWorkflowId(), Created: r.GetCreated()}, nil
}

// Handle returns a handle to an existing workflow (not checked until used).
func (c *Client) Handle(workflowID string) *Handle { return &Handle{c: c, ID: workflowID} }

// Get returns one workflow, payloads included.
func (c *Client) Get(ctx context.Context, workflowID string) (WorkflowInfo, error) {
	r, err := c.rpc.GetWorkflow(ctx, &pb.GetWorkflowRequest{WorkflowId: workflowID})
	if err != nil {
		return WorkflowInfo{}, rpcError(err)
	}
	return workflowInfo(r.GetWorkflow()), nil
}

// Await waits until the workflow is in a final status (or PAUSED), asking again every
// minute, until ctx ends.
func (c *Client) Await(ctx context.Context, workflowID string) (WorkflowInfo, error) {
	for {
		wait := 60 * time.Second
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		wait = max(wait, 0)
		call, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		r, err := c.rpc.AwaitWorkflow(call, &pb.AwaitWorkflowRequest{WorkflowId: workflowID, TimeoutMs: uint32(wait.Milliseconds())})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return WorkflowInfo{}, ctx.Err()
			}
			return WorkflowInfo{}, rpcError(err)
		}
		info := workflowInfo(r.GetWorkflow())
		if r.GetDone() || info.Status.Final() {
			return info, nil
		}
		if err := ctx.Err(); err != nil {
			return info, err
		}
	}
}

// ListOptions filters ListWorkflows; the zero value lists every workflow, oldest first.
type ListOptions struct {
	Name            string
	Statuses        []Status
	CreatedAfter    time.Time
	CreatedBefore   time.Time
	PageSize        uint32 // 0: 100
	PageToken       string
	Descending      bool
	IncludePayloads bool
}

// List returns one page of workflows and the next page's token ("" at the end).
func (c *Client) List(ctx context.Context, o ListOptions) ([]WorkflowInfo, string, error) {
	req := &pb.ListWorkflowsRequest{
		WorkflowName: o.Name, PageSize: o.PageSize, PageToken: o.PageToken,
		Descending: o.Descending, IncludePayloads: o.IncludePayloads,
	}
	for _, s := range o.Statuses {
		req.Statuses = append(req.Statuses, statusToPB(s))
	}
	if !o.CreatedAfter.IsZero() {
		req.CreatedAfter = timestamppb.New(o.CreatedAfter)
	}
	if !o.CreatedBefore.IsZero() {
		req.CreatedBefore = timestamppb.New(o.CreatedBefore)
	}
	r, err := c.rpc.ListWorkflows(ctx, req)
	if err != nil {
		return nil, "", rpcError(err)
	}
	out := make([]WorkflowInfo, 0, len(r.GetWorkflows()))
	for _, w := range r.GetWorkflows() {
		out = append(out, workflowInfo(w))
	}
	return out, r.GetNextPageToken(), nil
}

// Steps lists a workflow's recorded steps in the order they were first recorded.
func (c *Client) Steps(ctx context.Context, workflowID string) ([]StepInfo, error) {
	r, err := c.rpc.ListSteps(ctx, &pb.ListStepsRequest{WorkflowId: workflowID})
	if err != nil {
		return nil, rpcError(err)
	}
	out := make([]StepInfo, 0, len(r.GetSteps()))
	for _, s := range r.GetSteps() {
		out = append(out, stepInfo(s))
	}
	return out, nil
}

// Send appends message to a workflow's mailbox under topic, for its Recv to take. With
// a non-empty idempotencyKey a repeat changes nothing (duplicate is then true). Errors:
// ErrNotFound, ErrFinished.
func (c *Client) Send(ctx context.Context, workflowID, topic string, message any, idempotencyKey string) (duplicate bool, err error) {
	payload, err := encode(message, "the message to workflow "+workflowID, 0)
	if err != nil {
		return false, err
	}
	r, err := c.rpc.Send(ctx, &pb.SendRequest{WorkflowId: workflowID, Topic: topic, Message: payload, IdempotencyKey: idempotencyKey})
	if err != nil {
		return false, rpcError(err)
	}
	return r.GetDuplicate(), nil
}

// GetEvent waits up to timeout for a workflow's event to be set and decodes its value
// into out; found is false if it was not set in time.
func (c *Client) GetEvent(ctx context.Context, workflowID, key string, timeout time.Duration, out any) (found bool, err error) {
	deadline := time.Now().Add(max(timeout, 0))
	for {
		remaining := max(time.Until(deadline), 0)
		wait := min(remaining, 60*time.Second)
		call, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		r, err := c.rpc.GetEvent(call, &pb.GetEventRequest{WorkflowId: workflowID, Key: key, TimeoutMs: uint32(wait.Milliseconds())})
		cancel()
		if err != nil {
			return false, rpcError(err)
		}
		if r.GetFound() {
			return true, decodeInto(r.GetValue(), out, "event "+key)
		}
		if remaining <= 60*time.Second {
			return false, nil
		}
	}
}

// Cancel cancels a workflow and its unfinished descendants; returns the IDs cancelled
// (empty when it had finished).
func (c *Client) Cancel(ctx context.Context, workflowID, reason string) ([]string, error) {
	r, err := c.rpc.CancelWorkflow(ctx, &pb.CancelWorkflowRequest{WorkflowId: workflowID, Reason: reason})
	if err != nil {
		return nil, rpcError(err)
	}
	return r.GetCancelled(), nil
}

// Resume runs a FAILED, CANCELLED, TIMED_OUT, PAUSED or MAX_RECOVERY_ATTEMPTS_EXCEEDED
// workflow again under its ID.
func (c *Client) Resume(ctx context.Context, workflowID string) (*Handle, error) {
	r, err := c.rpc.ResumeWorkflow(ctx, &pb.ResumeWorkflowRequest{WorkflowId: workflowID})
	if err != nil {
		return nil, rpcError(err)
	}
	return c.Handle(r.GetWorkflow().GetWorkflowId()), nil
}

// Fork starts a new run of a workflow that reuses its finished steps recorded before
// fromStep; newID "" lets the coordinator choose.
func (c *Client) Fork(ctx context.Context, workflowID, fromStep, newID string) (*Handle, error) {
	r, err := c.rpc.ForkWorkflow(ctx, &pb.ForkWorkflowRequest{WorkflowId: workflowID, FromStep: fromStep, NewWorkflowId: newID})
	if err != nil {
		return nil, rpcError(err)
	}
	return c.Handle(r.GetWorkflow().GetWorkflowId()), nil
}

// Handle is a started workflow.
type Handle struct {
	c  *Client
	ID string
	// Created is true when the Start that made this handle recorded the workflow.
	Created bool
}

// Info returns the workflow as recorded.
func (h *Handle) Info(ctx context.Context) (WorkflowInfo, error) { return h.c.Get(ctx, h.ID) }

// Steps lists the workflow's recorded steps.
func (h *Handle) Steps(ctx context.Context) ([]StepInfo, error) { return h.c.Steps(ctx, h.ID) }

// Result waits for the workflow to finish and decodes its output into out (a pointer, or
// nil to ignore it). A workflow that ended other than SUCCEEDED is a *WorkflowFailedError
// carrying the recorded error type and message.
func (h *Handle) Result(ctx context.Context, out any) error {
	info, err := h.c.Await(ctx, h.ID)
	if err != nil {
		return err
	}
	return outcome(info, out)
}

func outcome(info WorkflowInfo, out any) error {
	if info.Status == StatusSucceeded {
		if out == nil {
			return nil
		}
		return decodeInto(&pb.Payload{Data: info.Output, Encoding: "json"}, out, "the output of workflow "+info.ID)
	}
	recorded := info.Error
	if recorded == nil {
		recorded = &Error{Type: string(info.Status), Message: "workflow ended " + string(info.Status)}
	}
	return &WorkflowFailedError{WorkflowID: info.ID, Status: info.Status, Err: recorded}
}
