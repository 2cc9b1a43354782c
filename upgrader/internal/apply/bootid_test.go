package apply

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestBootReportedRetriesWhatIsNotNotFound(t *testing.T) {
	transient := errors.New("the server is currently unable to handle the request")
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, "istari-1")

	for _, tc := range []struct {
		name    string
		answers []any // a boot ID, or an error, per call
		want    bool
		wantErr bool
		calls   int
	}{
		{name: "reports its boot", answers: []any{"b1"}, want: true, calls: 1},
		{name: "a Node no kubelet wrote", answers: []any{""}, want: false, calls: 1},
		{name: "no Node", answers: []any{notFound}, want: false, calls: 1},
		// One transient error must not skip the wait for the new boot's Node.
		{name: "a transient error, then its boot", answers: []any{transient, transient, "b1"}, want: true, calls: 3},
		{name: "errors to the bound", answers: []any{transient}, wantErr: true, calls: bootReadTries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got, err := bootReported(context.Background(), time.Millisecond, func(context.Context) (string, error) {
				a := tc.answers[min(calls, len(tc.answers)-1)]
				calls++

				if e, ok := a.(error); ok {
					return "", e
				}

				return a.(string), nil
			})

			if got != tc.want || (err != nil) != tc.wantErr || calls != tc.calls {
				t.Errorf("bootReported = %v, %v after %d calls; want %v, error %v, %d calls", got, err, calls, tc.want, tc.wantErr, tc.calls)
			}
		})
	}
}
