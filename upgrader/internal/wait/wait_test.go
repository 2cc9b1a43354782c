package wait

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPollEnds(t *testing.T) {
	refused := errors.New("refused")

	for _, tc := range []struct {
		name  string
		check func(calls int) error
		want  string
		calls int
	}{
		{name: "passes at once", check: func(int) error { return nil }, calls: 1},
		{name: "passes once it can", check: func(calls int) error {
			if calls < 3 {
				return errors.New("not yet")
			}

			return nil
		}, calls: 3},
		{name: "a permanent failure stops it", check: func(int) error { return Stop(refused) }, want: "refused", calls: 1},
		{name: "times out with what it saw last", check: func(int) error { return errors.New("still down") }, want: "timed out; last seen: still down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()

			calls := 0
			err := Poll(ctx, time.Millisecond, func(context.Context) error { calls++; return tc.check(calls) })

			switch {
			case tc.want == "" && err != nil, tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Poll = %v; want %q", err, tc.want)
			case tc.calls > 0 && calls != tc.calls:
				t.Fatalf("%d calls; want %d", calls, tc.calls)
			}
		})
	}
}
