package apply

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// bootstrappedElsewhere: another control plane (the talosconfig's endpoints but this node's own
// addresses) runs a bootstrapped etcd, as the bootstrap tells on one (talos.AskEtcdOf: its member list
// answers, or it holds etcd data; an etcd that does not run over an empty data directory, Preparing or
// Failed, holds none). It says which; with none (a fresh bring-up: the others in maintenance mode,
// installing, or waiting for the bootstrap) it says what each was seen as.
func (r *applyRun) bootstrappedElsewhere(ctx context.Context) (bool, string) {
	also := []string{r.at.IP}
	if r.rec != nil {
		also = append(also, r.rec.IP)
	}

	others := r.t.OtherControlPlanes(r.n, also...)
	if len(others) == 0 {
		return false, "no other control plane in the talosconfig"
	}

	seen := r.surveyEtcd(ctx, others)

	for i, cp := range others {
		if seen[i].Bootstrapped {
			return true, cp.IP + " runs it"
		}
	}

	described := make([]string, len(others))
	for i, cp := range others {
		described[i] = cp.IP + " " + seen[i].Detail
	}

	return false, strings.Join(described, ", ")
}

// etcdRound bounds one round of asking control planes about etcd (each asks up to four bounded calls).
const etcdRound = 15 * time.Second

// surveyEtcd asks every node at once what its etcd is.
func (r *applyRun) surveyEtcd(ctx context.Context, nodes []input.Node) []talos.EtcdOf {
	ctx, cancel := context.WithTimeout(ctx, etcdRound)
	defer cancel()

	seen := make([]talos.EtcdOf, len(nodes))

	var wg sync.WaitGroup

	for i, cp := range nodes {
		wg.Add(1)

		go func() {
			defer wg.Done()

			seen[i] = r.t.AskEtcdOf(ctx, cp)
		}()
	}

	wg.Wait()

	return seen
}

// waitBack: on a bootstrapped cluster a machine handed its config in maintenance mode (reflashed,
// replaced, or new) is a change to a running cluster like any other: the chain moves on only once
// it is back and healthy. Talos installs (when the disk holds no installation), reboots into it and
// boots; MachineStatus is running only once the Boot sequence ended
// (internal/app/machined/pkg/controllers/runtime/machine_status.go:429-432 at v1.12.4, 431-434 at
// v1.13.0), after the install's reboot (the Install sequence, internal/app/machined/pkg/runtime/
// v1alpha1/v1alpha1_sequencer.go:151-188 at v1.12.4, 153-190 at v1.13.0). So the wait (within --timeout) is for
// the node to answer at its address with the cluster's client certificate (the machine the config went to:
// sameMachine), then running and ready (ready but for its Node while no CNI runs: readiness.go, since the
// bootstrap runs beside the chain and a machine handed its config after it comes back before Cilium); then
// the checks of any changed node: the version it was given (one it did not install is upgraded, as on any
// running machine), its Node reported by the kubelet of this boot, what an earlier run left owed, health.
func (r *applyRun) waitBack(ctx context.Context) error {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s dmesg; talosctl -n %s get machinestatus; the machine's console", n.IP, n.IP)
	last := ""

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		s, err := r.t.Classify(ctx, n)
		if s != last {
			switch s {
			case talos.Maintenance:
				report.Progress(n.Name, "waiting: it answers in maintenance mode still")
			case talos.Unreachable:
				report.Progress(n.Name, "waiting: it does not answer (installing or rebooting)")
			}

			last = s
		}

		switch s {
		case talos.Running:
			return nil
		case talos.Maintenance:
			return report.Checkf("install", look, "it answers in maintenance mode at %s still (installing, or the install failed and it booted without a config)", n.IP)
		}

		return report.Checkf("install", look, "it does not answer at %s: %s", n.IP, talos.Message(err))
	})
	if err != nil {
		return report.From(n.Name, "install", look, err)
	}

	if err := r.sameMachine(ctx, n, look); err != nil {
		return err
	}

	if r.c, err = r.t.Connect(ctx, n); err != nil {
		return err
	}

	r.at, r.bootstrapped = n, true

	report.Progress(n.Name, "back: it answers at %s with the cluster's client certificate", n.IP)

	// Kubernetes first: whether the cluster serves pods yet decides what ready means (readiness.go).
	if !r.noKube {
		if err := r.connectKube(ctx); err != nil {
			return err
		}
	}

	if err := r.waitRunning(ctx); err != nil {
		return err
	}

	// A machine reset to maintenance mode from its own disk keeps its META, which says it is installed, so
	// Talos skips the install (the Install sequence runs its phases only when not installed: internal/app/
	// machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go:151-188 at v1.12.4, 153-190 at v1.13.0) and it boots
	// the Talos its disk holds. It is a running machine of the cluster now: the step goes on as for any (an
	// upgrade if its version or schematic differ, then health), rather than fail and leave that to the next run.
	running, rerr := talos.Version(ctx, r.c)
	sch, serr := talos.Schematic(ctx, r.c)

	if rerr == nil && serr == nil && (running != r.version || sch != r.schema) {
		report.Progress(n.Name, "it booted the Talos its disk held, %s (schematic %s), not %s (schematic %s): Talos skipped the install (a disk that was installed before), so it is upgraded as a running machine",
			running, orNone(sch), r.version, orNone(r.schema))

		if err := r.waitNodeOfThisBoot(ctx); err != nil {
			return err
		}

		return r.onRunning(ctx)
	}

	if err := r.checkVersion(ctx); err != nil {
		return err
	}

	if err := r.waitNodeOfThisBoot(ctx); err != nil {
		return err
	}

	if err := r.runOwedHooks(ctx); err != nil {
		return err
	}

	if err := r.healthy(ctx); err != nil {
		return err
	}

	return r.resumeLeftovers(ctx)
}

// sameMachine: the running machine that answers at n is the one the config went to (r.machine), as
// talos.MachineIdentityAs tells it: one of its links' permanent MACs is r.machine (read in maintenance mode, the
// MAC of the link that carried its address), else its identity is. A config that puts the address on a bond or
// a VLAN leaves no permanent MAC on the address's link, where its identity alone is the SMBIOS UUID.
func (r *applyRun) sameMachine(ctx context.Context, n input.Node, look string) error {
	if r.machine == "" {
		return nil
	}

	if id := talos.IdentityAt(ctx, r.t, n, r.machine); id != "" && id != r.machine {
		return &report.Failure{Node: n.Name, Check: "machine", Detail: fmt.Sprintf("another machine (%s) answers at %s than the one the config went to (%s)", id, n.IP, r.machine), Look: look}
	}

	return nil
}

// waitNodeOfThisBoot waits until the Node is the one the kubelet of this boot reports (its boot ID
// the machine's): a replaced or reflashed worker's old Node object stays, and still reads Ready
// until the node lifecycle controller notices its kubelet stopped.
func (r *applyRun) waitNodeOfThisBoot(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	n := r.n
	look := kube.NodeLook(n.Name)

	boot, err := talos.BootID(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "boot-id", Detail: talos.Message(err), Look: r.talosLook("read /proc/sys/kernel/random/boot_id")}
	}

	said := false

	err = wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		got, err := r.kube.NodeBootID(ctx, n.Name)

		switch {
		case err == nil && got == boot:
			return nil
		case !said:
			report.Progress(n.Name, "waiting: for its kubelet to report the Node from this boot (%s)", boot)

			said = true
		}

		if err != nil {
			return report.Checkf("node", look, "%s", report.FirstLine(err))
		}

		return report.Checkf("node", look, "the Node %s reports boot %s, the machine booted %s: its kubelet has not reported since it came back", n.Name, orNone(got), boot)
	})
	if err != nil {
		return report.From(n.Name, "node", look, err)
	}

	return nil
}
