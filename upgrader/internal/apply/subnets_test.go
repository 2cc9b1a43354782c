package apply

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

func TestRefuseRenumber(t *testing.T) {
	config := func(network string) string {
		return `version: v1alpha1
machine:
  type: worker
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
` + network
	}

	var (
		defaults = config("")
		moved    = config("  network:\n    serviceSubnets: [10.97.0.0/16]\n    podSubnets: [10.200.0.0/16]\n")
		ours     = config("  network:\n    serviceSubnets: [10.112.0.0/16]\n    podSubnets: [10.200.0.0/16]\n")
		dual     = config("  network:\n    serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]\n    podSubnets: [10.244.0.0/16, fd00:10:244::/56]\n")
	)

	const fix = ": a running cluster keeps the networks it was made with (its Services and Nodes keep their addresses in them), " +
		"and Iluvatar does not renumber a running cluster; put the patch back in iluvatar:arda.patches with what runs, "

	for _, tc := range []struct {
		name           string
		active, next   string
		running        kube.Networks
		want           string
		wantNoneActive string // the same with no active config to take the running values from
	}{
		{name: "the defaults over the defaults", active: defaults, next: defaults,
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24"}}},
		{name: "no Service and no Node yet (a cluster whose API server never ran)", active: defaults, next: moved},
		{name: "a Node not given its pod range yet", active: defaults, next: config("  network:\n    podSubnets: [10.200.0.0/16]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true}},
		{name: "a narrower service range that still holds the Service's address", active: defaults, next: config("  network:\n    serviceSubnets: [10.96.0.0/16]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1"}},
		{name: "dual-stack: each pod range in the subnet of its family", active: dual, next: dual,
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24", "fd00:10:244:3::/64"}}},
		{
			name: "the service range moved", active: defaults, next: config("  network:\n    serviceSubnets: [10.97.0.0/16]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24"}},
			want: "valinor: cluster-network: the cluster runs its Services from the range that holds 10.96.0.1 (the default/kubernetes Service's address), " +
				"but the config's cluster.network.serviceSubnets are [10.97.0.0/16]" + fix +
				"[{cluster: {network: {serviceSubnets: [10.96.0.0/12]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name:   "a wider service range with another base: it holds the Service's address, but its first host address is not it",
			active: defaults, next: config("  network:\n    serviceSubnets: [10.64.0.0/10]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24"}},
			want: "valinor: cluster-network: the cluster runs its Services from the range that holds 10.96.0.1 (the default/kubernetes Service's address), " +
				"but the config's cluster.network.serviceSubnets are [10.64.0.0/10] (its first host address is 10.64.0.1: the API server gives the " +
				"default/kubernetes Service the first host address of its primary range, so that range must start where the running one does)" + fix +
				"[{cluster: {network: {serviceSubnets: [10.96.0.0/12]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name: "a pod subnet narrower than the Node's range", active: defaults, next: config("  network:\n    podSubnets: [10.244.3.0/25]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24"}},
			want: "valinor: cluster-network: Node valinor runs its pods from 10.244.3.0/24 (its spec.podCIDRs), but the config's cluster.network.podSubnets are [10.244.3.0/25]" + fix +
				"[{cluster: {network: {podSubnets: [10.244.0.0/16]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name: "the patch dropped over a cluster made with its own ranges: both named", active: ours, next: defaults,
			running: kube.Networks{ServiceIP: "10.112.0.1", Node: true, PodCIDRs: []string{"10.200.3.0/24"}},
			want: "valinor: cluster-network: the cluster runs its Services from the range that holds 10.112.0.1 (the default/kubernetes Service's address), " +
				"but the config's cluster.network.serviceSubnets are [10.96.0.0/12] (Talos's default: the config sets none); " +
				"Node valinor runs its pods from 10.200.3.0/24 (its spec.podCIDRs), but the config's cluster.network.podSubnets are [10.244.0.0/16] (Talos's default: the config sets none)" + fix +
				"[{cluster: {network: {serviceSubnets: [10.112.0.0/16], podSubnets: [10.200.0.0/16]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name: "dual-stack service ranges reordered: the Service's address no longer in the primary range", active: dual,
			next:    config("  network:\n    serviceSubnets: [fd00:10:96::/112, 10.96.0.0/12]\n    podSubnets: [10.244.0.0/16, fd00:10:244::/56]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24", "fd00:10:244:3::/64"}},
			want: "valinor: cluster-network: the cluster runs its Services from the range that holds 10.96.0.1 (the default/kubernetes Service's address), " +
				"but the config's cluster.network.serviceSubnets are [fd00:10:96::/112, 10.96.0.0/12] (in another order: the first is the API server's primary range, which must hold it)" + fix +
				"[{cluster: {network: {serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name: "dual-stack pod ranges reordered: each Node range out of the podSubnet at its place", active: dual,
			next:    config("  network:\n    serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]\n    podSubnets: [fd00:10:244::/56, 10.244.0.0/16]\n"),
			running: kube.Networks{ServiceIP: "10.96.0.1", Node: true, PodCIDRs: []string{"10.244.3.0/24", "fd00:10:244:3::/64"}},
			want: "valinor: cluster-network: Node valinor runs its pods from 10.244.3.0/24, fd00:10:244:3::/64 (its spec.podCIDRs), " +
				"but the config's cluster.network.podSubnets are [fd00:10:244::/56, 10.244.0.0/16] (in another order: each of the Node's ranges must lie in the podSubnet at its place)" + fix +
				"[{cluster: {network: {podSubnets: [10.244.0.0/16, fd00:10:244::/56]}}}], and run pulumi up again; nothing was changed",
		},
		{
			name: "an active config that does not hold what runs: the running addresses named", active: moved, next: defaults,
			running: kube.Networks{ServiceIP: "10.112.0.1"},
			want: "valinor: cluster-network: the cluster runs its Services from the range that holds 10.112.0.1 (the default/kubernetes Service's address), " +
				"but the config's cluster.network.serviceSubnets are [10.96.0.0/12] (Talos's default: the config sets none)" + fix +
				"[{cluster: {network: {serviceSubnets: [the range that holds 10.112.0.1]}}}], and run pulumi up again; nothing was changed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			active, err := talos.LoadConfig(tc.active)
			if err != nil {
				t.Fatal(err)
			}

			next, err := talos.LoadConfig(tc.next)
			if err != nil {
				t.Fatal(err)
			}

			r := &applyRun{n: input.Node{Name: "valinor", IP: "10.0.0.11"}, role: "worker", cfg: next}

			got := ""
			if err := r.refuseRenumber(active, tc.running); err != nil {
				got = err.Error()
			}

			if got != tc.want {
				t.Fatalf("refuseRenumber: %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReadNetworksRetriesAnError(t *testing.T) {
	transient := errors.New("the server is currently unable to handle the request")
	runs := kube.Networks{ServiceIP: "10.96.0.1"}

	for _, tc := range []struct {
		name    string
		answers []error // per call; nil: what runs
		wantErr bool
		calls   int
	}{
		{name: "read at once", answers: []error{nil}, calls: 1},
		// One transient error must not let a renumber through.
		{name: "a transient error, then read", answers: []error{transient, transient, nil}, calls: 3},
		{name: "errors to the bound", answers: []error{transient}, wantErr: true, calls: bootReadTries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got, err := readNetworks(context.Background(), time.Millisecond, func(context.Context) (kube.Networks, error) {
				e := tc.answers[min(calls, len(tc.answers)-1)]
				calls++

				if e != nil {
					return kube.Networks{}, e
				}

				return runs, nil
			})

			if (err != nil) != tc.wantErr || calls != tc.calls || (err == nil && got.ServiceIP != runs.ServiceIP) {
				t.Errorf("readNetworks = %+v, %v after %d calls; want error %v, %d calls", got, err, calls, tc.wantErr, tc.calls)
			}
		})
	}
}

func TestCheckNetworksWhenTheAPICannotBeRead(t *testing.T) {
	config := func(network string) string {
		return "version: v1alpha1\nmachine:\n  type: worker\ncluster:\n  controlPlane:\n    endpoint: https://10.0.0.10:6443\n" + network
	}

	var (
		defaults = config("")
		dual     = config("  network:\n    serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]\n    podSubnets: [10.244.0.0/16, fd00:10:244::/56]\n")
		down     = errors.New(`Get "https://10.0.0.10:6443/api/v1/namespaces/default/services/kubernetes": dial tcp 10.0.0.10:6443: connect: connection refused`)
	)

	const (
		cannot = "valinor: cluster-network: cannot read the Service network and the Node's pod ranges the cluster runs (" +
			`Get "https://10.0.0.10:6443/api/v1/namespaces/default/services/kubernetes": dial tcp 10.0.0.10:6443: connect: connection refused` +
			"), so the node's active config stands for them: "
		fix = "; a running cluster keeps the networks it was made with, and Iluvatar does not renumber a running cluster; " +
			"put the active config's back in iluvatar:arda.patches, "
		again = "], and run pulumi up again; nothing was changed"
		goes  = "cannot read the cluster's Service network and pod ranges from the API (" +
			`Get "https://10.0.0.10:6443/api/v1/namespaces/default/services/kubernetes": dial tcp 10.0.0.10:6443: connect: connection refused` +
			"): the node's active config was compared instead, and the config keeps its serviceSubnets and podSubnets"
	)

	for _, tc := range []struct {
		name         string
		active, next string
		want         string // "": the apply goes on, saying goes
	}{
		{name: "the defaults over the defaults", active: defaults, next: defaults},
		{name: "the defaults written out over the defaults unset", active: defaults,
			next: config("  network:\n    serviceSubnets: [10.96.0.0/12]\n    podSubnets: [10.244.0.0/16]\n")},
		{name: "the same dual-stack ranges", active: dual, next: dual},
		{name: "a prefix written with host bits over the range it masks", active: defaults, next: config("  network:\n    serviceSubnets: [10.96.0.1/12]\n")},
		{
			name: "the service range moved", active: defaults, next: config("  network:\n    serviceSubnets: [10.97.0.0/16]\n"),
			want: cannot + "the config's cluster.network.serviceSubnets are [10.97.0.0/16], the active config's are [10.96.0.0/12]" + fix + "[{cluster: {network: {serviceSubnets: [10.96.0.0/12]}}}" + again,
		},
		{
			name: "the patch dropped over a cluster made with its own ranges: both named", active: dual, next: defaults,
			want: cannot + "the config's cluster.network.serviceSubnets are [10.96.0.0/12] (Talos's default: the config sets none), " +
				"the active config's are [10.96.0.0/12, fd00:10:96::/112]; " +
				"the config's cluster.network.podSubnets are [10.244.0.0/16] (Talos's default: the config sets none), the active config's are [10.244.0.0/16, fd00:10:244::/56]" + fix +
				"[{cluster: {network: {serviceSubnets: [10.96.0.0/12, fd00:10:96::/112], podSubnets: [10.244.0.0/16, fd00:10:244::/56]}}}" + again,
		},
		{
			name: "dual-stack service ranges reordered", active: dual,
			next: config("  network:\n    serviceSubnets: [fd00:10:96::/112, 10.96.0.0/12]\n    podSubnets: [10.244.0.0/16, fd00:10:244::/56]\n"),
			want: cannot + "the config's cluster.network.serviceSubnets are [fd00:10:96::/112, 10.96.0.0/12], the active config's are [10.96.0.0/12, fd00:10:96::/112]" + fix +
				"[{cluster: {network: {serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]}}}" + again,
		},
		{
			name: "dual-stack pod ranges reordered", active: dual,
			next: config("  network:\n    serviceSubnets: [10.96.0.0/12, fd00:10:96::/112]\n    podSubnets: [fd00:10:244::/56, 10.244.0.0/16]\n"),
			want: cannot + "the config's cluster.network.podSubnets are [fd00:10:244::/56, 10.244.0.0/16], the active config's are [10.244.0.0/16, fd00:10:244::/56]" + fix +
				"[{cluster: {network: {podSubnets: [10.244.0.0/16, fd00:10:244::/56]}}}" + again,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			active, err := talos.LoadConfig(tc.active)
			if err != nil {
				t.Fatal(err)
			}

			next, err := talos.LoadConfig(tc.next)
			if err != nil {
				t.Fatal(err)
			}

			r := &applyRun{n: input.Node{Name: "valinor", IP: "10.0.0.11"}, role: "worker", cfg: next}

			calls := 0
			got := ""
			if err := r.checkNetworksFrom(context.Background(), time.Millisecond, active, func(context.Context) (kube.Networks, error) {
				calls++

				return kube.Networks{}, down
			}); err != nil {
				got = err.Error()
			}

			if tc.want != "" {
				if got != tc.want {
					t.Fatalf("checkNetworksFrom: %q\nwant %q", got, tc.want)
				}
			} else if got != "" {
				t.Fatalf("checkNetworksFrom: %q, want it to go on", got)
			}

			if calls != bootReadTries {
				t.Errorf("the API was read %d times, want %d before the active config stands in", calls, bootReadTries)
			}

			if line, err := r.compareActive(active, report.FirstLine(down)); tc.want == "" && (err != nil || line != goes) {
				t.Errorf("compareActive: %q, %v\nwant %q", line, err, goes)
			}
		})
	}
}

func TestCheckNetworksWithNeitherTheAPINorAnActiveConfig(t *testing.T) {
	next, err := talos.LoadConfig("version: v1alpha1\nmachine:\n  type: worker\ncluster:\n  controlPlane:\n    endpoint: https://10.0.0.10:6443\n")
	if err != nil {
		t.Fatal(err)
	}

	r := &applyRun{n: input.Node{Name: "valinor", IP: "10.0.0.11"}, role: "worker", cfg: next}
	err = r.checkNetworksFrom(context.Background(), time.Millisecond, nil, func(context.Context) (kube.Networks, error) {
		return kube.Networks{}, errors.New("connection refused")
	})

	const want = "valinor: cluster-network: cannot read the Service network and the Node's pod ranges the cluster runs (connection refused), " +
		"and the node has no active cluster config to compare the config's with; nothing was changed"
	if err == nil || err.Error() != want {
		t.Fatalf("checkNetworksFrom: %v\nwant %q", err, want)
	}
}
