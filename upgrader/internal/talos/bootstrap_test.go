package talos

import (
	"errors"
	"strings"
	"testing"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/input"
)

func TestDecideBootstrap(t *testing.T) {
	node := func(name string) input.Node { return input.Node{Name: name, IP: "10.0.0." + name[len(name)-1:]} }
	waits := func(name string) etcdSeen {
		return etcdSeen{node: node(name), configured: true, kind: etcdNone, detail: "waits"}
	}
	maintenance := func(name string) etcdSeen {
		return etcdSeen{node: node(name), kind: etcdNone, detail: "is in maintenance mode"}
	}
	silent := func(name string) etcdSeen { return etcdSeen{node: node(name), detail: "does not answer"} }
	holds := func(name string) etcdSeen {
		return etcdSeen{node: node(name), configured: true, kind: etcdHeld, detail: "holds etcd data"}
	}
	answers := func(name string, members ...string) etcdSeen {
		s := etcdSeen{node: node(name), configured: true, kind: etcdAnswers}
		for _, m := range members {
			s.members = append(s.members, &machineapi.EtcdMember{Hostname: m})
		}

		return s
	}
	worker := etcdSeen{node: node("w1"), configured: true, kind: etcdNone, notCP: status.Error(codes.Unimplemented, "member list is only available on control plane nodes")}

	const everyoneWaits = `every control plane waits for a bootstrap (cp1 waits; cp2 waits; cp3 is in maintenance mode), and --no-new-cluster starts no etcd: ` +
		`this cluster's etcd data is gone with their disks; restore it from a snapshot (talosctl -n 10.0.0.1 bootstrap --recover-from=SNAPSHOT), ` +
		`see docs/day2.md#every-control-plane-reflashed`

	for _, tc := range []struct {
		name   string
		target etcdSeen
		others []etcdSeen
		noNew  bool
		want   bootstrapVerdict
	}{
		{name: "the target's member list answers", target: answers("cp1", "cp2", "cp3"), others: []etcdSeen{silent("cp2")},
			want: bootstrapVerdict{done: "a cluster exists: cp1 answered etcd's member list (cp2, cp3): not bootstrapping"}},
		{name: "another's member list answers, one silent", target: waits("cp1"), others: []etcdSeen{silent("cp2"), answers("cp3", "cp3", "")},
			want: bootstrapVerdict{done: "a cluster exists: cp3 answered etcd's member list (cp3, 0000000000000000, not started): not bootstrapping"}},
		{name: "another holds etcd data, one silent", target: waits("cp1"), others: []etcdSeen{silent("cp2"), holds("cp3")},
			want: bootstrapVerdict{done: "a cluster exists: cp3 holds etcd data: not bootstrapping"}},
		{name: "the target holds etcd data", target: holds("cp1"), others: []etcdSeen{waits("cp2")}, noNew: true,
			want: bootstrapVerdict{done: "a cluster exists: cp1 holds etcd data: not bootstrapping"}},
		{name: "the target in maintenance mode", target: maintenance("cp1"), others: []etcdSeen{waits("cp2")},
			want: bootstrapVerdict{wait: "not ready for the bootstrap yet: is in maintenance mode", look: lookAt([]etcdSeen{maintenance("cp1")})}},
		{name: "the target silent", target: silent("cp1"),
			want: bootstrapVerdict{wait: "not ready for the bootstrap yet: does not answer", look: lookAt([]etcdSeen{silent("cp1")})}},
		{name: "another silent, the rest waiting", target: waits("cp1"), others: []etcdSeen{waits("cp2"), silent("cp3")},
			want: bootstrapVerdict{wait: "not bootstrapping while a control plane could hold etcd: cp3 does not answer", look: lookAt([]etcdSeen{silent("cp3")})}},
		{name: "another silent, even with --no-new-cluster", target: waits("cp1"), others: []etcdSeen{silent("cp2")}, noNew: true,
			want: bootstrapVerdict{wait: "not bootstrapping while a control plane could hold etcd: cp2 does not answer", look: lookAt([]etcdSeen{silent("cp2")})}},
		{name: "everyone waiting: bootstrap", target: waits("cp1"), others: []etcdSeen{waits("cp2"), maintenance("cp3")}},
		{name: "the only control plane waiting: bootstrap", target: waits("cp1")},
		{name: "everyone waiting, --no-new-cluster", target: waits("cp1"), others: []etcdSeen{waits("cp2"), maintenance("cp3")}, noNew: true,
			want: bootstrapVerdict{refuse: errors.New(everyoneWaits), look: lookAt([]etcdSeen{waits("cp1"), waits("cp2"), maintenance("cp3")})}},
		{name: "a worker", target: worker,
			want: bootstrapVerdict{refuse: errors.New("Unimplemented: member list is only available on control plane nodes (is w1 a control plane?)"), look: lookAt([]etcdSeen{worker})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideBootstrap(tc.target, tc.others, tc.noNew)
			if got.done != tc.want.done || got.wait != tc.want.wait || got.look != tc.want.look || errString(got.refuse) != errString(tc.want.refuse) {
				t.Fatalf("decideBootstrap =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}

	return err.Error()
}

func TestParseBootstrap(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{args: []string{"--node", "cp1=10.0.0.1", "--timeout", "30m"}},
		{args: []string{"--node", "cp1=10.0.0.1", "--no-new-cluster", "--timeout", "30m"}},
		{args: []string{"--node", "cp1=10.0.0.1"}, want: "--timeout is required (a duration such as 15m)"},
		{args: []string{"--node", "cp1=10.0.0.1", "--no-new-cluster=maybe", "--timeout", "30m"}, want: "no-new-cluster"},
	} {
		_, err := ParseBootstrap(tc.args, strings.NewReader(`{"talosconfig": "context: a"}`))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ParseBootstrap(%q) = %v; want %q", tc.args, err, tc.want)
		}
	}
}
