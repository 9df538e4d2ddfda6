// Package stepline is the Go SDK of Stepline, a durable-execution engine: a Client that
// starts and follows workflows by name, and a Worker that runs workflows written in Go,
// speaking the stepline.v1 gRPC protocol (docs/protocol.md) to a coordinator.
//
// A workflow is a function func(stepline.Context, T) (R, error) registered by name; it
// calls steps with [Step] (their results are durable before the workflow sees them),
// starts concurrent helpers with Context.Go or [Go], and waits durably with [Sleep],
// [Recv], [GetEvent] and [AwaitChild]. Every payload is JSON.
//
// # Step IDs
//
// A step (or durable operation) takes its ID from the scope of the Context it is called
// with, synchronously, at the call: "3" is the third call made by the workflow function
// itself, "t2/1" the first call made by the second helper it started with Go, "t2/t1/4"
// deeper still; the same shape as the Python SDK. Go has no deterministic scheduler, so
// each scope belongs to exactly one goroutine: the workflow function's, or the one Go
// starts for a helper. A goroutine started by user code with the go statement has no
// scope of its own and must not call steps with a Context it did not get from Go: the
// SDK detects that (the call fails with ErrScope and so does the workflow).
package stepline
