package report

import (
	"errors"
	"fmt"
	"testing"
)

func TestFailedCommandsLastLine(t *testing.T) {
	f := &Failure{Node: "tirion", Check: "drain", Detail: "cannot evict pod\nas it would violate the budget", Look: "kubectl get pdb -A"}

	if got, want := f.Line(), "upgrader: FAILED: tirion: drain: cannot evict pod as it would violate the budget; look with: kubectl get pdb -A"; got != want {
		t.Fatalf("Line() = %q; want %q (one line)", got, want)
	}
}

func TestWaitErrorAsFailure(t *testing.T) {
	failed := &Failure{Node: "tirion", Check: "machine", Detail: "another machine", Look: "talosctl get links"}

	for _, tc := range []struct {
		name string
		err  error
		want Failure
	}{
		{name: "a failure is itself", err: fmt.Errorf("poll: %w", failed), want: *failed},
		{name: "a check names itself", err: Checkf("etcd", "talosctl etcd members", "member %s is a learner", "alqualonde"),
			want: Failure{Node: "taniquetil", Check: "etcd", Detail: "member alqualonde is a learner", Look: "talosctl etcd members"}},
		{name: "a check on another node names it", err: &Check{Name: "node-ready", Look: "kubectl get node gandalf", Err: errors.New("not Ready"), Node: "gandalf"},
			want: Failure{Node: "gandalf", Check: "node-ready", Detail: "not Ready", Look: "kubectl get node gandalf"}},
		{name: "anything else is the command's own check", err: errors.New("timed out"),
			want: Failure{Node: "taniquetil", Check: "health", Detail: "timed out", Look: "talosctl get machinestatus"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := From("taniquetil", "health", "talosctl get machinestatus", tc.err); *got != tc.want {
				t.Fatalf("From = %+v; want %+v", *got, tc.want)
			}
		})
	}
}
