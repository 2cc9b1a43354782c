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
	running, err := readNetworks(ctx, every, func(ctx context.Context) (kube.Networks, error) { return r.kube.ClusterNetworks(ctx, r.n.Name) })
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "cluster-network", Look: "kubectl get service kubernetes -n default; kubectl get node " + r.n.Name,
			Detail: "cannot read the Service network and the Node's pod ranges the cluster runs (" + report.FirstLine(err) + "), which the config must keep; nothing was changed"}
	}

	return r.refuseRenumber(active, running)
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
func (r *applyRun) refuseRenumber(active coreconfig.Provider, running kube.Networks) error {
	if r.cfg.Cluster() == nil {
		return nil
	}

	var problems, back []string

	if running.ServiceIP != "" {
		subnets := r.cfg.Cluster().Network().ServiceCIDRs()
		if !holds(subnets, running.ServiceIP) {
			problems = append(problems, fmt.Sprintf("the cluster runs its Services from the range that holds %s (the default/kubernetes Service's address), "+
				"but the config's cluster.network.serviceSubnets are %s", running.ServiceIP, written(subnets, r.setsSubnets(false))))
			back = append(back, "serviceSubnets: "+runningValue(active, false, []string{running.ServiceIP}))
		}
	}

	if running.Node && len(running.PodCIDRs) > 0 {
		subnets := r.cfg.Cluster().Network().PodCIDRs()
		if !holds(subnets, running.PodCIDRs...) {
			problems = append(problems, fmt.Sprintf("Node %s runs its pods from %s (its spec.podCIDRs), but the config's cluster.network.podSubnets are %s",
				r.n.Name, strings.Join(running.PodCIDRs, ", "), written(subnets, r.setsSubnets(true))))
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

		if holds(subnets, addresses...) {
			return "[" + strings.Join(subnets, ", ") + "]"
		}
	}

	return "[the range that holds " + strings.Join(addresses, ", ") + "]"
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
