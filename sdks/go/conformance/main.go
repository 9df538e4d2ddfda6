// Command conformance is the Go SDK's conformance interpreter (conformance/README.md at
// the repository root): a worker serving conformance.interpreter, driven by the runner.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	stepline "github.com/stepline/stepline/sdks/go"
)

const features = "steps,scopes,waits,nondeterminism"

// planned is the failure a fail command plans; recorded as conformance.Planned.
type planned struct{ attempt int }

func (p planned) Error() string     { return fmt.Sprintf("attempt %d", p.attempt) }
func (p planned) ErrorType() string { return "conformance.Planned" }

type program struct {
	Commands []map[string]json.RawMessage `json:"commands"`
}

func renamed(name string) string {
	old, new, found := strings.Cut(os.Getenv("CONFORMANCE_RENAME"), "=")
	if found && old != "" && name == old {
		return new
	}
	return name
}

// effect appends this step body's line; returns how many lines of it the file holds.
func effect(ctx context.Context, name string) int {
	info, _ := stepline.CurrentStep(ctx)
	path := os.Getenv("CONFORMANCE_EFFECTS")
	if path == "" {
		return 1
	}
	prefix := fmt.Sprintf("%s\t%s\t%s\t", info.WorkflowID, info.StepID, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	if _, err := f.WriteString(prefix + os.Getenv("CONFORMANCE_WORKER") + "\n"); err != nil {
		panic(err)
	}
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	count := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix) {
			count++
		}
	}
	return count
}

func run(ctx stepline.Context, commands []map[string]json.RawMessage) ([]any, error) {
	results := make([]any, 0, len(commands))
	for _, command := range commands {
		for kind, arg := range command { // one key per command
			out, err := one(ctx, kind, arg)
			if err != nil {
				return nil, err
			}
			results = append(results, out)
		}
	}
	return results, nil
}

func one(ctx stepline.Context, kind string, raw json.RawMessage) (any, error) {
	var arg struct {
		Name    string          `json:"name"`
		Output  json.RawMessage `json:"output"`
		Times   int             `json:"times"`
		Retries int             `json:"retries"`
		Ms      int             `json:"ms"`
		Topic   string          `json:"topic"`
		Key     string          `json:"key"`
		Value   json.RawMessage `json:"value"`
	}
	if kind != "parallel" {
		if err := json.Unmarshal(raw, &arg); err != nil {
			return nil, err
		}
	}
	switch kind {
	case "step":
		name := renamed(arg.Name)
		return stepline.Step(ctx, name, func(ctx context.Context) (json.RawMessage, error) {
			effect(ctx, name)
			if len(arg.Output) == 0 {
				return json.RawMessage("null"), nil
			}
			return arg.Output, nil
		})
	case "fail":
		name := renamed(arg.Name)
		policy := stepline.RetryPolicy{MaxAttempts: arg.Retries + 1, InitialInterval: 10 * time.Millisecond,
			BackoffFactor: 1, MaxInterval: 10 * time.Millisecond}
		return stepline.Step(ctx, name, func(ctx context.Context) (string, error) {
			if n := effect(ctx, name); n <= arg.Times {
				info, _ := stepline.CurrentStep(ctx)
				return "", planned{attempt: int(info.Attempt)}
			}
			return "ok", nil
		}, stepline.WithRetry(policy))
	case "block":
		name := renamed(arg.Name)
		_, err := stepline.Step(ctx, name, func(ctx context.Context) (any, error) {
			effect(ctx, name)
			info, _ := stepline.CurrentStep(ctx)
			release := filepath.Join(os.Getenv("CONFORMANCE_DIR"), "release-"+info.WorkflowID+"-"+name)
			for {
				if _, err := os.Stat(release); err == nil {
					return nil, nil
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		return nil, err
	case "parallel":
		var branches [][]map[string]json.RawMessage
		if err := json.Unmarshal(raw, &branches); err != nil {
			return nil, err
		}
		futures := make([]*stepline.Future[[]any], len(branches))
		for i, branch := range branches { // started in order: scopes t1, t2, ...
			futures[i] = stepline.Go(ctx, func(ctx stepline.Context) ([]any, error) { return run(ctx, branch) })
		}
		return stepline.Gather(ctx, futures...)
	case "sleep":
		return nil, stepline.Sleep(ctx, time.Duration(arg.Ms)*time.Millisecond)
	case "recv":
		msg, _, err := stepline.Recv[json.RawMessage](ctx, arg.Topic, stepline.NoTimeout)
		return msg, err
	case "set_event":
		return nil, stepline.SetEvent(ctx, arg.Key, arg.Value)
	}
	return nil, fmt.Errorf("unknown command %q", kind)
}

func main() {
	opts := []stepline.WorkerOption{}
	if ms := os.Getenv("CONFORMANCE_SUSPEND_AFTER_MS"); ms != "" {
		n, err := strconv.Atoi(ms)
		if err != nil {
			panic(err)
		}
		opts = append(opts, stepline.WithSuspendAfter(time.Duration(n)*time.Millisecond))
	}
	w := stepline.NewWorker(os.Getenv("STEPLINE_ADDRESS"), opts...)
	stepline.Register(w, "conformance.interpreter", func(ctx stepline.Context, p program) ([]any, error) {
		return run(ctx, p.Commands)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		select {
		case <-w.Ready():
			fmt.Printf("conformance ready %s features=%s\n", w.ID(), features)
		case <-ctx.Done():
		}
	}()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
