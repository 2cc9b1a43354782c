package stop

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iluvatar/upgrader/internal/wait"
)

// lockedBuffer is the watch's output, written from its goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.b.String()
}

func TestTheBoundOnStoppingCoversTheUndoAndOneCall(t *testing.T) {
	if got := Grace; got != 75*time.Second {
		t.Fatalf("Grace = %s; want the undo's %s and one call's %s: 1m15s", Grace, wait.UndoTimeout, wait.CallTimeout)
	}
}

func TestASignalEndsEveryWaitAndThenTheProcessWithinItsBound(t *testing.T) {
	const stopping = "upgrader: -: SIGTERM: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to 1m0s, and the upgrader ends within 50ms\n"

	const look = "; look with: the lines above; kubectl get nodes (a Node left cordoned is uncordoned by the next run)\n"

	for _, tc := range []struct {
		name    string
		signals []os.Signal
		endsBy  bool // the command ends on its own, right after the first signal
		output  string
		exit    int // -1: never called
	}{
		{name: "no signal: nothing happens", exit: -1},
		{
			name: "a signal, then the command ends on its own: no exit forced", signals: []os.Signal{syscall.SIGTERM}, endsBy: true,
			output: stopping, exit: -1,
		},
		{
			name: "a signal, and the command does not end: ended once the bound is over", signals: []os.Signal{syscall.SIGTERM},
			output: stopping + "upgrader: FAILED: -: stop: still running 50ms after SIGTERM: ended at once, whatever it was doing (a drain it was putting back stays as it was)" + look,
			exit:   1,
		},
		{
			name: "a second signal ends it at once", signals: []os.Signal{syscall.SIGTERM, syscall.SIGINT},
			output: stopping + "upgrader: FAILED: -: stop: a second signal (SIGINT) after SIGTERM: ended at once, whatever it was doing (a drain it was putting back stays as it was)" + look,
			exit:   1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan os.Signal, 2)
			out := &lockedBuffer{}
			exited := make(chan int, 1)

			// A second signal is sent at once; without one, the bound (50 ms) is what ends a command that does not.
			ctx, done := watch(context.Background(), ch, 50*time.Millisecond, func(code int) { exited <- code }, out)

			for _, s := range tc.signals {
				ch <- s
			}

			if len(tc.signals) > 0 {
				<-ctx.Done()

				if got := context.Cause(ctx).Error(); got != "SIGTERM" {
					t.Fatalf("cause %q; want the signal's name", got)
				}

				if tc.endsBy {
					// Its stopping line is out once the context ended: the command ends now.
					deadline := time.Now().Add(5 * time.Second)
					for !strings.HasSuffix(out.String(), "\n") && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}

					done()
				}
			}

			got := -1

			select {
			case got = <-exited:
			case <-time.After(500 * time.Millisecond):
			}

			if len(tc.signals) == 0 && ctx.Err() != nil {
				t.Fatalf("the context ended without a signal: %v", ctx.Err())
			}

			if !tc.endsBy {
				done()
			}

			if got != tc.exit || out.String() != tc.output {
				t.Fatalf("exit %d, output %q; want exit %d, output %q", got, out.String(), tc.exit, tc.output)
			}
		})
	}
}

func TestAWaitStoppedByASignalSaysSo(t *testing.T) {
	ch := make(chan os.Signal, 1)

	ctx, done := watch(context.Background(), ch, time.Hour, func(int) {}, &lockedBuffer{})
	defer done()

	bounded, cancel := context.WithTimeout(ctx, time.Hour) // a command's --timeout, under the signal's context
	defer cancel()

	polls := 0
	err := wait.Poll(bounded, time.Millisecond, func(context.Context) error {
		polls++
		if polls == 2 {
			ch <- syscall.SIGTERM
		}

		return errNotYet
	})

	if err == nil || err.Error() != "stopped: SIGTERM; last seen: the node did not come back" {
		t.Fatalf("Poll = %v; want it stopped by the signal, with what it saw last", err)
	}
}

var errNotYet = &notYet{}

type notYet struct{}

func (*notYet) Error() string { return "the node did not come back" }
