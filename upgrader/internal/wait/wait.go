// Package wait bounds every wait: a poll until a check passes, fails for good or the command's
// --timeout ends, and a bound on each single call so a peer that hangs cannot use it all up.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Every is how often a wait asks again.
const Every = 500 * time.Millisecond

// CallTimeout bounds one API call: a node that accepts the connection and then hangs must not use
// up a whole command's --timeout in one call.
const CallTimeout = 15 * time.Second

// UndoTimeout bounds putting back what a step changed before it failed short of a reboot (the Node
// uncordoned, the after-hooks, the paused workloads resumed). It runs on a context of its own: the
// command's has ended (its --timeout, or a signal), and what it put back matters more than its end.
const UndoTimeout = time.Minute

// Call is ctx bounded for one API call.
func Call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}

// permanent stops a poll at once: retrying cannot make it pass.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Stop is err as a poll's last answer: retrying cannot make it pass, so the poll returns err at once.
func Stop(err error) error { return &permanent{err} }

// stillFailing is a poll that ran out of time, or was stopped (why: ctx's cause, e.g. a signal): the
// last thing it saw.
type stillFailing struct{ last, stopped error }

func (s *stillFailing) Error() string {
	ended := "timed out"
	if s.stopped != nil {
		ended = "stopped: " + s.stopped.Error()
	}

	if s.last == nil {
		return ended
	}

	return fmt.Sprintf("%s; last seen: %s", ended, s.last)
}

func (s *stillFailing) Unwrap() error { return s.last }

// Poll asks f until it passes, fails permanently (Stop), or ctx ends (the command's --timeout).
func Poll(ctx context.Context, every time.Duration, f func(ctx context.Context) error) error {
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
			return &stillFailing{last: last, stopped: StoppedBy(ctx)}
		case <-time.After(every):
		}
	}
}

// Remaining is what is left of the command's --timeout.
func Remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}

	return time.Hour
}

// StoppedBy is why ctx ended when it was not its deadline nor a plain cancel: the cause a stop gave
// (context.WithCancelCause), e.g. the signal that ended the command; nil otherwise.
func StoppedBy(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, context.Canceled) {
		return nil
	}

	return cause
}
