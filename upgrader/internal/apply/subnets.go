package apply

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
)

// checkNetworks refuses, before anything changes, a config that would move the pod or Service network of the
// cluster the node runs in (refuseRenumber). What the cluster runs is read from the API, not from any record: a
// stack that drops its subnet patch (back to Talos's defaults) over a cluster made with others is seen too.
func (r *applyRun) checkNetworks(ctx context.Context, every time.Duration, active coreconfig.Provider) error {
	return r.checkNetworksFrom(ctx, every, active, func(ctx context.Context) (kube.Networks, error) { return r.kube.ClusterNetworks(ctx, r.n.Name) })
}

// checkNetworksFrom is checkNetworks with the API read given. When the API cannot be read, the node's active config
// (the one Talos runs, which made the cluster or was applied over it through this same check) stands in for what
// runs: an API server down because of a bad config is repaired by applying a config, and refusing every config then
// would refuse the repair. A config whose subnets equal the active config's moves nothing and goes on; one whose
// subnets differ is refused, since nothing then shows that the cluster does not run the active ones.
func (r *applyRun) checkNetworksFrom(ctx context.Context, every time.Duration, active coreconfig.Provider, get func(context.Context) (kube.Networks, error)) error {
	running, err := readNetworks(ctx, every, get)
	if err == nil {
		return r.refuseRenumber(active, running)
	}

	line, ferr := r.compareActive(active, report.FirstLine(err))
	if ferr != nil {
		return ferr
	}

	report.Progress(r.n.Name, "%s", line)

	return nil
}

// compareActive: the config's subnets against the active config's, in order (the first of each list is the primary
// range: refuseRenumber). Unset lists are Talos's defaults on both sides (Network().ServiceCIDRs()/PodCIDRs() give
// them: machinery v1.13.0 config/types/v1alpha1/v1alpha1_clusterconfig.go:215-236). It returns the progress line
// when they are equal, else the refusal.
func (r *applyRun) compareActive(active coreconfig.Provider, why string) (string, error) {
	look := "kubectl get service kubernetes -n default; kubectl get node " + r.n.Name + "; talosctl get machineconfig -o yaml --nodes " + r.n.IP
	if active == nil || active.Cluster() == nil || r.cfg.Cluster() == nil {
		return "", &report.Failure{Node: r.n.Name, Check: "cluster-network", Look: look,
			Detail: "cannot read the Service network and the Node's pod ranges the cluster runs (" + why + "), and the node has no active cluster config " +
				"to compare the config's with; nothing was changed"}
	}

	var moved, back []string

	for _, pods := range []bool{false, true} {
		was, next, key := active.Cluster().Network().ServiceCIDRs(), r.cfg.Cluster().Network().ServiceCIDRs(), "serviceSubnets"
		if pods {
			was, next, key = active.Cluster().Network().PodCIDRs(), r.cfg.Cluster().Network().PodCIDRs(), "podSubnets"
		}

		if !sameSubnets(was, next) {
			moved = append(moved, fmt.Sprintf("the config's cluster.network.%s are %s, the active config's are [%s]", key, written(next, r.setsSubnets(pods)), strings.Join(was, ", ")))
			back = append(back, key+": ["+strings.Join(was, ", ")+"]")
		}
	}

	if len(moved) > 0 {
		return "", &report.Failure{Node: r.n.Name, Check: "cluster-network", Look: look,
			Detail: "cannot read the Service network and the Node's pod ranges the cluster runs (" + why + "), so the node's active config stands for them: " +
				strings.Join(moved, "; ") + "; a running cluster keeps the networks it was made with, and Iluvatar does not renumber a running cluster; " +
				"put the active config's back in iluvatar:arda.patches, [{cluster: {network: {" + strings.Join(back, ", ") + "}}}], and run pulumi up again; nothing was changed"}
	}

	return "cannot read the cluster's Service network and pod ranges from the API (" + why + "): the node's active config was compared instead, " +
		"and the config keeps its serviceSubnets and podSubnets", nil
}

// sameSubnets: the same prefixes in the same order (a prefix written with host bits set is the range it masks).
func sameSubnets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}

	for i := range a {
		pa, aerr := netip.ParsePrefix(strings.TrimSpace(a[i]))
		pb, berr := netip.ParsePrefix(strings.TrimSpace(b[i]))

		if aerr != nil || berr != nil {
			if strings.TrimSpace(a[i]) != strings.TrimSpace(b[i]) {
				return false
			}

			continue
		}

		if pa.Masked() != pb.Masked() {
			return false
		}
	}

	return true
}

// readNetworks asks get again after an error (NotFound is already an answer there), up to bootReadTries times every
// apart, and then returns the error: a single transient error must not let a renumber through.
func readNetworks(ctx context.Context, every time.Duration, get func(context.Context) (kube.Networks, error)) (kube.Networks, error) {
	running, err := get(ctx)

	for try := 1; err != nil && try < bootReadTries; try++ {
		select {
		case <-ctx.Done():
			return running, err
		case <-time.After(every):
		}

		running, err = get(ctx)
	}

	return running, err
}

// refuseRenumber: the config's serviceSubnets must hold the default/kubernetes Service's address and its podSubnets
// every pod range the Node was given. Both are fixed when the cluster is made: a new service range moves
// kube-apiserver's --service-cluster-ip-range and the kubelets' cluster DNS (the tenth address of the range:
// machinery v1.13.0 config/types/v1alpha1/v1alpha1_clusterconfig.go:258-265) away from the Services that keep
// their addresses, CoreDNS's among them, so pods resolve nothing; a new pod range leaves every Node's podCIDRs,
// which are never reassigned (kube.Networks), outside the cluster's. A config that sets none runs Talos's defaults
// (v1alpha1_clusterconfig.go:215-236). No Service (no API server has run yet) and no Node (its kubelet never
// registered) leave nothing to compare with.
//
// Order counts on both sides. The first serviceSubnet is kube-apiserver's primary range, the one the
// default/kubernetes Service's address is taken from (k8s.io/kubernetes v1.34.1 cmd/kube-apiserver/app/options/
// completion.go:114-119); an existing default ServiceCIDR is not rewritten to a new order, only from single- to
// dual-stack with the same first range (pkg/controlplane/controller/defaultservicecidr/
// default_servicecidr_controller.go:145-157), so a reordered list leaves the API server at odds with it. The i-th of
// a Node's podCIDRs is marked taken in the controller-manager's i-th cluster CIDR, and one outside it is an error for
// that Node (pkg/controller/nodeipam/ipam/range_allocator.go:289-303), so each must lie in the podSubnet at its index.
func (r *applyRun) refuseRenumber(active coreconfig.Provider, running kube.Networks) error {
	if r.cfg.Cluster() == nil {
		return nil
	}

	var problems, back []string

	if running.ServiceIP != "" {
		subnets := r.cfg.Cluster().Network().ServiceCIDRs()
		// Holding the address is not enough: the API server takes the kubernetes Service's address as the first host
		// address of its primary range (completion.go:114-119, cited above), so a range with another base (10.64.0.0/10
		// over 10.96.0.0/12) holds the running address yet makes the API server want another one.
		first := firstHost(subnets)
		if !holdsInOrder(subnets, running.ServiceIP) || first != running.ServiceIP {
			why := ""
			if !holdsInOrder(subnets, running.ServiceIP) {
				why = reordered(subnets, "the first is the API server's primary range, which must hold it", running.ServiceIP)
			} else {
				why = fmt.Sprintf(" (its first host address is %s: the API server gives the default/kubernetes Service the first host "+
					"address of its primary range, so that range must start where the running one does)", first)
			}
			problems = append(problems, fmt.Sprintf("the cluster runs its Services from the range that holds %s (the default/kubernetes Service's address), "+
				"but the config's cluster.network.serviceSubnets are %s%s", running.ServiceIP, written(subnets, r.setsSubnets(false)), why))
			back = append(back, "serviceSubnets: "+runningValue(active, false, []string{running.ServiceIP}))
		}
	}

	if running.Node && len(running.PodCIDRs) > 0 {
		subnets := r.cfg.Cluster().Network().PodCIDRs()
		if !holdsInOrder(subnets, running.PodCIDRs...) {
			problems = append(problems, fmt.Sprintf("Node %s runs its pods from %s (its spec.podCIDRs), but the config's cluster.network.podSubnets are %s%s",
				r.n.Name, strings.Join(running.PodCIDRs, ", "), written(subnets, r.setsSubnets(true)),
				reordered(subnets, "each of the Node's ranges must lie in the podSubnet at its place", running.PodCIDRs...)))
			back = append(back, "podSubnets: "+runningValue(active, true, running.PodCIDRs))
		}
	}

	if len(problems) == 0 {
		return nil
	}

	return &report.Failure{Node: r.n.Name, Check: "cluster-network", Look: "kubectl get service kubernetes -n default; kubectl get node " + r.n.Name + " -o jsonpath='{.spec.podCIDRs}'",
		Detail: strings.Join(problems, "; ") + ": a running cluster keeps the networks it was made with (its Services and Nodes keep their addresses in them), " +
			"and Iluvatar does not renumber a running cluster; put the patch back in iluvatar:arda.patches with what runs, " +
			"[{cluster: {network: {" + strings.Join(back, ", ") + "}}}], and run pulumi up again; nothing was changed"}
}

// setsSubnets: the config writes podSubnets (pods) or serviceSubnets itself, rather than running Talos's default.
func (r *applyRun) setsSubnets(pods bool) bool {
	raw := r.cfg.RawV1Alpha1()
	if raw == nil || raw.ClusterConfig == nil || raw.ClusterConfig.ClusterNetwork == nil {
		return false
	}

	if pods {
		return len(raw.ClusterConfig.ClusterNetwork.PodSubnet) > 0
	}

	return len(raw.ClusterConfig.ClusterNetwork.ServiceSubnet) > 0
}

func written(subnets []string, set bool) string {
	s := "[" + strings.Join(subnets, ", ") + "]"
	if !set {
		s += " (Talos's default: the config sets none)"
	}

	return s
}

// runningValue is what to write back: the node's active config's subnets when they hold what runs (the config the
// cluster was made with), else the running addresses themselves, to be widened to the range they came from.
func runningValue(active coreconfig.Provider, pods bool, addresses []string) string {
	if active != nil && active.Cluster() != nil {
		subnets := active.Cluster().Network().ServiceCIDRs()
		if pods {
			subnets = active.Cluster().Network().PodCIDRs()
		}

		if holdsInOrder(subnets, addresses...) {
			return "[" + strings.Join(subnets, ", ") + "]"
		}
	}

	return "[the range that holds " + strings.Join(addresses, ", ") + "]"
}

// reordered names why, when subnets hold what in another order only.
func reordered(subnets []string, why string, what ...string) string {
	if holds(subnets, what...) {
		return " (in another order: " + why + ")"
	}

	return ""
}

// holdsInOrder: the i-th address or prefix lies inside the i-th of subnets.
func holdsInOrder(subnets []string, what ...string) bool {
	if len(what) > len(subnets) {
		return false
	}

	for i, w := range what {
		if !holds(subnets[i:i+1], w) {
			return false
		}
	}

	return true
}

// firstHost: the first host address of the first of subnets (its base address plus one), or "" when there is none.
func firstHost(subnets []string) string {
	if len(subnets) == 0 {
		return ""
	}

	p, err := netip.ParsePrefix(strings.TrimSpace(subnets[0]))
	if err != nil {
		return ""
	}

	return p.Masked().Addr().Next().String()
}

// holds: every address or prefix lies inside one of subnets.
func holds(subnets []string, what ...string) bool {
	var nets []netip.Prefix

	for _, s := range subnets {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			nets = append(nets, p.Masked())
		}
	}

	for _, w := range what {
		p, err := netip.ParsePrefix(w)
		if err != nil {
			a, aerr := netip.ParseAddr(w)
			if aerr != nil {
				return false
			}

			p = netip.PrefixFrom(a, a.BitLen())
		}

		inside := false

		for _, n := range nets {
			if n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
				inside = true

				break
			}
		}

		if !inside {
			return false
		}
	}

	return true
}
