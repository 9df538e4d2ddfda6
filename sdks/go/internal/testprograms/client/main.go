// Command client is the Go client of the e2e tests: it starts a workflow by name and
// prints its outcome as one JSON line.
//
//	client <address> <workflow name> <JSON array of arguments> [workflow ID]
//
// prints {"workflow_id": ..., "output": ...} or {"workflow_id": ..., "status": ...,
// "error_type": ..., "error_message": ...}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	stepline "github.com/stepline/stepline/sdks/go"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: client <address> <workflow name> <JSON array of arguments> [workflow ID]")
		os.Exit(2)
	}
	var args []any
	if err := json.Unmarshal([]byte(os.Args[3]), &args); err != nil {
		fail(err)
	}
	c, err := stepline.NewClient(os.Args[1])
	if err != nil {
		fail(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []stepline.StartOption{stepline.WithArgs(args...)}
	if len(os.Args) > 4 {
		opts = append(opts, stepline.WithWorkflowID(os.Args[4]))
	}
	h, err := c.Start(ctx, os.Args[2], nil, opts...)
	if err != nil {
		fail(err)
	}
	out := map[string]any{"workflow_id": h.ID}
	var result any
	err = h.Result(ctx, &result)
	var failed *stepline.WorkflowFailedError
	switch {
	case err == nil:
		out["output"] = result
	case errors.As(err, &failed):
		out["status"], out["error_type"], out["error_message"] = failed.Status, failed.Err.Type, failed.Err.Message
	default:
		fail(err)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "client:", err)
	os.Exit(1)
}
