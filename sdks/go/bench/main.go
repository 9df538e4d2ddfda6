// Command bench is the Go SDK's benchmark worker (bench/languages.py at the repository
// root): bench.sequential and bench.chain with the no-op step "noop", as the Python and
// TypeScript bench workers serve them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	stepline "github.com/stepline/stepline/sdks/go"
)

func noop(ctx stepline.Context, i int) (int, error) {
	return stepline.Step(ctx, "noop", func(context.Context) (int, error) { return i, nil })
}

// sequential is workload (a): n steps one after another; each step call's seconds.
func sequential(ctx stepline.Context, n int) ([]float64, error) {
	durations := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		started := time.Now()
		if _, err := noop(ctx, i); err != nil {
			return nil, err
		}
		durations = append(durations, time.Since(started).Seconds())
	}
	return durations, nil
}

// chain is workload (b): n steps one after another.
func chain(ctx stepline.Context, n int) (int, error) {
	for i := 0; i < n; i++ {
		if _, err := noop(ctx, i); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func main() {
	capacity := 20000
	if c, err := strconv.Atoi(os.Getenv("BENCH_CAPACITY")); err == nil {
		capacity = c
	}
	w := stepline.NewWorker(os.Getenv("STEPLINE_ADDRESS"), stepline.WithCapacity(capacity))
	stepline.Register(w, "bench.sequential", sequential)
	stepline.Register(w, "bench.chain", chain)
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
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		os.Exit(1)
	}
}
