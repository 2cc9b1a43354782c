package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// permanent stops a poll at once: retrying cannot make it pass.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// stillFailing is a poll that ran out of time: the last thing it saw.
type stillFailing struct{ last error }

func (s *stillFailing) Error() string {
	if s.last == nil {
		return "timed out"
	}

	return fmt.Sprintf("timed out; last seen: %s", s.last)
}

func (s *stillFailing) Unwrap() error { return s.last }

// poll asks f until it passes, fails permanently, or ctx ends (the command's --timeout).
func poll(ctx context.Context, every time.Duration, f func(ctx context.Context) error) error {
	var last error

	for {
		err := f(ctx)
		if err == nil {
			return nil
		}

		var p *permanent
		if errors.As(err, &p) {
			return p.err
		}

		// An error caused by the deadline itself says less than the one before it.
		if ctx.Err() == nil || last == nil {
			last = err
		}

		select {
		case <-ctx.Done():
			return &stillFailing{last: last}
		case <-time.After(every):
		}
	}
}

// remaining is what is left of the command's --timeout.
func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}

	return time.Hour
}
