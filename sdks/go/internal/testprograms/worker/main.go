// Command worker is the Go worker process of the e2e tests (tests/e2e/test_go.py).
//
// Every step body appends one line to the file named by SIDE_EFFECTS before it returns,
// in the format of tests/e2e/programs/flows.py (workflow ID, step ID, worker name,
// attempt, start time, what; tab-separated), so tests count how often each body ran.
// STEP_DELAY (seconds) slows steps down; VARIANT changes the code between runs;
// SUSPEND_AFTER ("never" or seconds) is how long a waiting workflow stays in memory.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	stepline "github.com/stepline/stepline/sdks/go"
)

func effect(ctx context.Context, started time.Time, what string) {
	info, _ := stepline.CurrentStep(ctx)
	worker := os.Getenv("WORKER_NAME")
	if worker == "" {
		worker = strconv.Itoa(os.Getpid())
	}
	line := fmt.Sprintf("%s\t%s\t%s\t%d\t%.6f\t%s\n", info.WorkflowID, info.StepID, worker, info.Attempt,
		float64(started.UnixNano())/1e9, what)
	f, err := os.OpenFile(os.Getenv("SIDE_EFFECTS"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil { // one write with O_APPEND: whole lines
		panic(err)
	}
}

func delay() time.Duration {
	s, _ := strconv.ParseFloat(os.Getenv("STEP_DELAY"), 64)
	return time.Duration(s * float64(time.Second))
}

// record is a step body that takes STEP_DELAY (times jitter), then writes its effect.
func record(what string, jitter bool) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		started := time.Now()
		d := delay()
		if jitter {
			d = time.Duration(rand.Float64() * 2 * float64(d))
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		effect(ctx, started, what)
		return what + "-done", nil
	}
}

type greetInput struct {
	Name string `json:"name"`
}

// greet (scenario a): two steps in a row.
func greet(ctx stepline.Context, in greetInput) (map[string]any, error) {
	hello, err := stepline.Step(ctx, "greet.hello", func(ctx context.Context) (string, error) {
		effect(ctx, time.Now(), "hello")
		return "hello " + in.Name, nil
	})
	if err != nil {
		return nil, err
	}
	loud, err := stepline.Step(ctx, "greet.shout", func(ctx context.Context) (string, error) {
		effect(ctx, time.Now(), "shout")
		return strings.ToUpper(hello), nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"greeting": loud, "workflow": ctx.WorkflowID()}, nil
}

// fanout (scenario b): n helpers started with Go, each awaiting three steps.
func fanout(ctx stepline.Context, n int) ([][]string, error) {
	helpers := make([]*stepline.Future[[]string], n)
	for i := range n {
		helpers[i] = stepline.Go(ctx, func(ctx stepline.Context) ([]string, error) {
			var out []string
			for j := range 3 {
				v, err := stepline.Step(ctx, "fan.part", record(fmt.Sprintf("%d.%d", i, j), true))
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		})
	}
	// One step of the workflow's own scope, concurrently with the helpers: ID "1".
	if _, err := stepline.Step(ctx, "fan.main", record("main", false)); err != nil {
		return nil, err
	}
	return stepline.Gather(ctx, helpers...)
}

// sequence (scenario c): n steps in a row, each STEP_DELAY long.
func sequence(ctx stepline.Context, n int) ([]string, error) {
	var out []string
	for i := range n {
		v, err := stepline.Step(ctx, "seq.record", record(fmt.Sprintf("s%d", i), false))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// child (scenario d): the Go counterpart of tests/e2e/programs/children.py's e2e.child.
func child(ctx stepline.Context, x int) (int, error) {
	if _, err := stepline.Step(ctx, "stamp", record(fmt.Sprintf("child %d ran", x), false)); err != nil {
		return 0, err
	}
	if _, _, err := stepline.Recv[any](ctx, "go", stepline.NoTimeout); err != nil {
		return 0, err
	}
	return 10 * x, nil
}

// waits (scenario f): a step, a durable sleep, an event, a recv, a step.
func waits(ctx stepline.Context, seconds float64) (map[string]any, error) {
	if _, err := stepline.Step(ctx, "stamp", record("before", false)); err != nil {
		return nil, err
	}
	if err := stepline.Sleep(ctx, time.Duration(seconds*float64(time.Second))); err != nil {
		return nil, err
	}
	if err := stepline.SetEvent(ctx, "phase", "slept"); err != nil {
		return nil, err
	}
	msg, ok, err := stepline.Recv[string](ctx, "go", stepline.NoTimeout)
	if err != nil || !ok {
		return nil, errors.Join(err, errors.New("recv timed out"))
	}
	_, none, err := stepline.Recv[string](ctx, "nothing", 0)
	if err != nil {
		return nil, err
	}
	if _, err := stepline.Step(ctx, "stamp", record("got "+msg, false)); err != nil {
		return nil, err
	}
	return map[string]any{"message": msg, "second_recv_found": none}, nil
}

// evolving (scenario g): VARIANT=a calls alpha then hangs; VARIANT=b calls beta first.
func evolving(ctx stepline.Context) (string, error) {
	name := "alpha"
	if os.Getenv("VARIANT") == "b" {
		name = "beta"
	}
	first, err := stepline.Step(ctx, name, record(name, false))
	if err != nil {
		return "", err
	}
	_, err = stepline.Step(ctx, "hang", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	return first, err
}

type declined struct{ reason string }

func (d *declined) Error() string     { return "declined: " + d.reason }
func (d *declined) ErrorType() string { return "test.Declined" }

// retrying: a step that succeeds on its third attempt, then one that fails for good.
func retrying(ctx stepline.Context) (string, error) {
	policy := stepline.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond, BackoffFactor: 2}
	got, err := stepline.Step(ctx, "flaky", func(ctx context.Context) (string, error) {
		info, _ := stepline.CurrentStep(ctx)
		effect(ctx, time.Now(), fmt.Sprintf("attempt %d", info.Attempt))
		if info.Attempt < 3 {
			return "", fmt.Errorf("attempt %d failed", info.Attempt)
		}
		return fmt.Sprintf("succeeded on attempt %d", info.Attempt), nil
	}, stepline.WithRetry(policy))
	if err != nil {
		return "", err
	}
	_, err = stepline.Step(ctx, "charge", func(ctx context.Context) (string, error) {
		effect(ctx, time.Now(), "charge")
		return "", stepline.Permanent(&declined{"card " + got})
	}, stepline.WithRetry(policy))
	return "", err
}

// misuse calls a step from a goroutine started with the go statement.
func misuse(ctx stepline.Context) (string, error) {
	errs := make(chan error, 1)
	go func() {
		_, err := stepline.Step(ctx, "stray", record("stray", false))
		errs <- err
	}()
	return "", <-errs
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	opts := []stepline.WorkerOption{}
	if s := os.Getenv("SUSPEND_AFTER"); s == "never" {
		opts = append(opts, stepline.WithSuspendAfter(-1))
	} else if s != "" {
		secs, _ := strconv.ParseFloat(s, 64)
		opts = append(opts, stepline.WithSuspendAfter(time.Duration(secs*float64(time.Second))))
	}
	w := stepline.NewWorker(os.Getenv("STEPLINE_ADDRESS"), opts...)
	stepline.Register(w, "go.greet", greet)
	stepline.Register(w, "go.fanout", fanout)
	stepline.Register(w, "go.sequence", sequence)
	stepline.Register(w, "e2e.child", child)
	stepline.Register(w, "go.waits", waits)
	w.Workflow("go.evolving", evolving)
	w.Workflow("go.retrying", retrying)
	w.Workflow("go.misuse", misuse)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		select {
		case <-w.Ready():
			fmt.Printf("worker ready %s\n", w.ID())
		case <-ctx.Done():
		}
	}()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
