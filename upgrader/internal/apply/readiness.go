package apply

import (
	"context"
	"fmt"
	"strings"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

// Whether the cluster serves pods yet decides what "healthy" asks of a node's Kubernetes side.
//
// Talos's MachineStatus is ready only once the machine's Node is Ready (the nodeReady check,
// internal/app/machined/pkg/controllers/runtime/machine_status.go:217 and 354-385 at v1.12.4 and v1.13.0),
// and no Node is Ready before a CNI runs. Arda's configs install none (cni: none): Cilium comes after every
// machine's apply and the API gate. So on a bootstrapped cluster before Cilium (a machine handed its config
// after the bootstrap, or a second `pulumi up` after a first that stopped before Cilium) no node can be
// ready, and a step that waited for it would wait out its bound, and fail the same way on every later run.
//
// The rule, one for every wait of a step (the hand-over's, after a reboot, health):
//   - some Node is Ready (kube.PodsServed): the cluster serves pods, and this node's Node must be Ready;
//     once seen, for the rest of the run (the node's own reboot takes the last Ready Node of a one-node
//     cluster away);
//   - no Node is Ready, and a kubelet reports its container runtime's network not ready (kube.PodsNoCNI):
//     no CNI runs yet; the Node's readiness is not asked for, everything else is: MachineStatus ready in
//     all but nodeReady (time, network, services (etcd and the kubelet among them), static pods), etcd,
//     the Node reported by the kubelet of this boot, the kubelet's version, the control plane's pods;
//   - no Node is Ready for any other reason (kube.PodsNone): a broken cluster: the Node must be Ready, and
//     no disruption starts (disruptionAllowed).
//
// Without Kubernetes (--no-kubernetes) no Node is checked at all, its readiness in MachineStatus neither.

// nodeReadyNeeded: this node's Node must be Ready (see above); an error when the Nodes cannot be read.
func (r *applyRun) nodeReadyNeeded(ctx context.Context) (bool, error) {
	if r.kube == nil {
		return false, nil
	}

	if r.servedPods {
		return true, nil
	}

	pods, names, err := r.kube.ServesPods(ctx)
	if err != nil {
		return true, err
	}

	switch pods {
	case kube.PodsServed:
		r.servedPods = true

		return true, nil
	case kube.PodsNoCNI:
		if !r.saidNoCNI {
			report.Progress(r.n.Name, "no Node in the cluster is Ready, and %s: no CNI runs yet (before Cilium): "+
				"its Node's readiness is not waited for, the rest is", noCNI(names))

			r.saidNoCNI = true
		}

		return false, nil
	}

	return true, nil
}

func noCNI(names []string) string {
	return fmt.Sprintf("the kubelet of %s reports %q", strings.Join(names, ", "), kube.NetworkNotReady)
}

// machineReady: MachineStatus is what a finished step leaves. Before the bootstrap Talos cannot be ready
// (its readiness waits for etcd and the Node), and a control plane's Boot sequence ends only once its etcd
// runs (StartAllServices waits for every service it started, etcd included:
// internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go:419-497 at v1.12.4, 428-506 at
// v1.13.0), which waits for the bootstrap: its stage is "booting" until then. After the bootstrap it is
// running and ready, or ready in all but its Node while no CNI runs. butNode says which.
func (r *applyRun) machineReady(ctx context.Context, ms talos.Status) (butNode bool, err error) {
	look := r.talosLook("get machinestatus")

	switch {
	case !r.bootstrapped:
		if ms.Stage == "running" || (r.controlPlane() && ms.Stage == "booting") {
			return false, nil
		}
	case ms.Stage != "running":
	case ms.Ready:
		return false, nil
	case ms.ReadyButNode():
		need, err := r.nodeReadyNeeded(ctx)
		if err != nil {
			return false, report.Checkf("machine-status", "kubectl get nodes", "%s, and whether any Node is Ready cannot be read: %s", ms, report.FirstLine(err))
		}

		if !need {
			return true, nil
		}
	}

	// A control plane whose Boot sequence has not ended waits for its etcd: say what etcd says.
	if r.controlPlane() && ms.Stage == "booting" {
		if says := talos.EtcdServiceSays(ctx, r.c); says != "" {
			return false, report.Checkf("machine-status", look+"; talosctl -n "+r.n.IP+" service etcd", "%s (%s)", ms, says)
		}
	}

	return false, report.Checkf("machine-status", look, "%s", ms)
}

// nodeCheck: this node's Node is Ready, or, while no CNI runs, at least there (its kubelet registered it).
func (r *applyRun) nodeCheck(ctx context.Context) error {
	look := kube.NodeLook(r.n.Name)

	need, err := r.nodeReadyNeeded(ctx)
	if err != nil {
		return report.Checkf("node-ready", "kubectl get nodes", "whether any Node is Ready cannot be read: %s", report.FirstLine(err))
	}

	if need {
		err = r.kube.NodeReady(ctx, r.n.Name)
	} else {
		err = r.kube.NodeExists(ctx, r.n.Name)
	}

	if err != nil {
		return report.Checkf("node-ready", look, "%s", report.FirstLine(err))
	}

	return nil
}

// disruptionAllowed: before a node is taken down, the cluster must serve pods, or serve none only for
// want of a CNI (a bring-up before Cilium: the change goes ahead behind the etcd checks, and its health
// after asks all but the Node's readiness). A cluster that serves none for another reason, or whose Nodes
// cannot be read, is not rolled: after the reboot nothing could tell this node's health from the cluster's.
func (r *applyRun) disruptionAllowed(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	n := r.n

	pods, names, err := r.kube.ServesPods(ctx)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "nodes", Detail: "the Nodes cannot be read, so nothing was changed: " + report.FirstLine(err), Look: "kubectl get nodes"}
	}

	switch pods {
	case kube.PodsServed:
		r.servedPods = true
	case kube.PodsNoCNI:
		report.Progress(n.Name, "no Node in the cluster is Ready, and %s: no CNI runs yet (before Cilium): the change goes ahead behind the etcd checks, "+
			"and after it everything but its Node's readiness is checked", noCNI(names))

		r.saidNoCNI = true
	default:
		return &report.Failure{
			Node:  n.Name,
			Check: "nodes",
			Detail: "no Node in the cluster is Ready, and no kubelet says it is for want of a CNI: the cluster serves no pods, " +
				"so nothing is taken down (its health after could not be told from the cluster's); nothing was changed",
			Look: "kubectl get nodes; kubectl describe nodes",
		}
	}

	return nil
}

// oneAtATime: one machine down at a time, across runs too. A run that stopped may have left another node drained
// on purpose (its next boot brings a change: kube.LeftDrained); that one is finished first, by its own step. A
// node that is itself left so is finishing its own disruption (already drained, its OSDs already down), which
// puts no second machine down: two left so (state from before this check) would otherwise each wait on the
// other for good. Asked in onRunning before anything changes on the machine, whenever a reboot or an upgrade
// is coming: the only way to disrupt, so the drain needs no second ask.
func (r *applyRun) oneAtATime(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	n := r.n

	left, err := r.kube.LeftDrained(ctx, "")
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "nodes", Detail: "whether an earlier run left another node drained cannot be read, so nothing was changed: " + report.FirstLine(err), Look: kube.OwedLook()}
	}

	others := make([]string, 0, len(left))
	release := make([]string, 0, 2*len(left))

	for _, l := range left {
		if l.Node == n.Name {
			return nil
		}

		others = append(others, l.Node+": "+l.Why)
		release = append(release, "kubectl uncordon "+l.Node+" && kubectl annotate node "+l.Node+" iluvatar.dev/cordoned-", kube.OwedForget(l.Node))
	}

	if len(others) == 0 {
		return nil
	}

	return &report.Failure{
		Node:  n.Name,
		Check: "one-at-a-time",
		Detail: fmt.Sprintf("an earlier run that stopped left %s; taking %s down beside it would put two machines down at once, so nothing was changed: "+
			"finish that one first (a `pulumi up` in which only its step runs: `pulumi up --target` its -apply step's URN, from `pulumi stack --show-urns`; "+
			"if that shows no change, its settings were set back: put them as the stopped run had them), then run this again. "+
			"A machine gone for good (renamed, out of the inventory) is released by hand, once Ceph's noout is unset (`ceph osd unset noout`) and what its "+
			"hooks paused is resumed: %s",
			strings.Join(others, "; "), n.Name, strings.Join(release, "; ")),
		Look: "kubectl get nodes; " + kube.OwedLook(),
	}
}
