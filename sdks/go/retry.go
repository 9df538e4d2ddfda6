package stepline

import (
	"errors"
	"math"
	"time"
)

// RetryPolicy says how a failing step is retried before its error is recorded. Attempt
// n (from 1) that fails waits InitialInterval * BackoffFactor^(n-1), at most MaxInterval
// (0: no cap), before attempt n+1, up to MaxAttempts attempts in all (at least 1).
// Errors for which NonRetryable returns true, and errors wrapped with Permanent, are
// recorded at once. Every attempt's start is recorded, so a recovered step resumes
// counting where it stopped.
type RetryPolicy struct {
	MaxAttempts     int
	InitialInterval time.Duration
	BackoffFactor   float64 // below 1 counts as 1
	MaxInterval     time.Duration
	NonRetryable    func(error) bool
}

// DefaultRetryPolicy is the Python SDK's RetryPolicy(): 3 attempts, 1 s, doubling, 60 s.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, BackoffFactor: 2, MaxInterval: time.Minute}

// Retries reports whether attempt (from 1) failing with err is followed by another.
func (p RetryPolicy) Retries(err error, attempt int) bool {
	if attempt >= p.MaxAttempts {
		return false
	}
	var perm *permanent
	if errors.As(err, &perm) {
		return false
	}
	return p.NonRetryable == nil || !p.NonRetryable(err)
}

// Delay is how long to wait after attempt (from 1) failed.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	factor := max(p.BackoffFactor, 1)
	d := float64(p.InitialInterval) * math.Pow(factor, float64(attempt-1))
	if p.MaxInterval > 0 && d > float64(p.MaxInterval) {
		return p.MaxInterval
	}
	if d > math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(d)
}

type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// ErrorType records the wrapped error's type.
func (p *permanent) ErrorType() string { return typeName(p.err) }

// Permanent marks a step error as not to be retried, whatever the policy.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err}
}
