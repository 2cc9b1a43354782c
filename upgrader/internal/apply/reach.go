// Reaching the node: where it answers, which machine it is, and the hand-over of a first config.

package apply

import (
	"context"
	"fmt"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// reach waits until the node answers at all (it may still be booting, PXE-booting or installing):
// at its address, or else where its last apply reached it, when the config moves it from there.
// A running machine other than the one last reached, at an address the inventory did not move
// it from, is refused at once: another machine took the address.
func (r *applyRun) reach(ctx context.Context) (string, error) {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s version --insecure; the machine's console", n.IP)

	var (
		old          *input.Node
		state        string
		said, warned bool
	)

	if r.rec.Moved(n) {
		o := r.rec.At(n)
		old = &o
	}

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		s, err := r.t.Classify(ctx, n)
		if s != talos.Unreachable {
			r.at, state = n, s

			return r.checkMachine(ctx, s)
		}

		if old != nil {
			if so, _ := r.t.Classify(ctx, *old); so != talos.Unreachable { //nolint:errcheck
				id := r.identify(ctx, *old, so)

				if so == talos.Running && r.rec.Machine != "" && id != "" && id != r.rec.Machine {
					if !warned {
						report.Progress(n.Name, "another machine (%s) answers at %s, where this node was last reached: not this one", id, old.IP)

						warned = true
					}
				} else {
					r.at, state, r.machine = *old, so, id

					return nil
				}
			}
		}

		if !said {
			report.Progress(n.Name, "waiting for the node to answer (booting or installing?)")

			said = true
		}

		return report.Checkf("reach", look, "the node does not answer: %s", talos.Message(err))
	})
	if err != nil {
		return "", report.From(n.Name, "reach", "", err)
	}

	if r.moving() {
		report.Progress(n.Name, "does not answer at %s, but at %s, where it was last reached (%s): the new config goes there, and moves it", n.IP, r.at.IP, state)
	} else {
		report.Progress(n.Name, "answers: %s", state)
	}

	return state, nil
}

// moving: the node answers at its old address, and the config moves it to its new one.
func (r *applyRun) moving() bool { return r.at.IP != r.n.IP }

// identify reads which machine answers at an address ("" when it cannot be told, and says why): the machine
// last reached, when one of its links' permanent MACs is the one recorded (talos.MachineIdentityAs).
func (r *applyRun) identify(ctx context.Context, at input.Node, state string) string {
	connect := func(ctx context.Context, n input.Node) (*client.Client, error) { return r.t.Connect(ctx, n) }
	if state == talos.Maintenance {
		connect = talos.ConnectInsecure
	}

	c, err := connect(ctx, at)
	if err != nil {
		return ""
	}

	defer c.Close() //nolint:errcheck

	known := ""
	if r.rec != nil {
		known = r.rec.Machine
	}

	id, err := talos.MachineIdentityAs(ctx, c, at.IP, known)
	if err != nil {
		report.Progress(r.n.Name, "which machine it is cannot be read: %s", talos.Message(err))
	}

	return id
}

// checkMachine reads which machine answers at the node's address, and refuses a running one that
// is not the machine last reached there while the config still names that one (nothing in the
// inventory moved: another machine took the address). A machine in maintenance mode is a
// reflashed or replaced one, which the hand-over is for.
func (r *applyRun) checkMachine(ctx context.Context, state string) error {
	r.machine = r.identify(ctx, r.at, state)

	rec := r.rec
	if state != talos.Running || rec == nil || rec.Machine == "" || r.machine == "" || r.machine == rec.Machine {
		return nil
	}

	named := talos.ConfigMAC(r.cfg, r.n.IP)
	if named == rec.Machine {
		ip := r.at.IP

		return wait.Stop(&report.Failure{
			Node:  r.n.Name,
			Check: "machine",
			Detail: fmt.Sprintf("another machine answers at %s: it is %s, but %s was %s when last reached, and the config still names %s: another machine took the address, so nothing was changed",
				ip, r.machine, r.n.Name, rec.Machine, named),
			Look: fmt.Sprintf("talosctl -n %s get links; talosctl -n %s get hostname; the DHCP leases for %s", ip, ip, ip),
		})
	}

	if named == "" {
		report.Progress(r.n.Name, "another machine answers than when last reached (%s, was %s), and the config names no MAC to tell which is meant: carrying on", r.machine, rec.Machine)
	} else {
		report.Progress(r.n.Name, "another machine answers than when last reached (%s, was %s): the inventory names %s now, a replaced machine", r.machine, rec.Machine, named)
	}

	return nil
}

// follow waits (within --timeout) for the node at the address its new config gives it, and talks
// to it there from then on.
func (r *applyRun) follow(ctx context.Context) error {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s version; talosctl -n %s get addresses; the machine's console", n.IP, r.at.IP)

	report.Progress(n.Name, "waiting for it at %s, where the new config puts it", n.IP)

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		s, err := r.t.Classify(ctx, n)

		switch s {
		case talos.Running:
			return nil
		case talos.Maintenance:
			return wait.Stop(report.Checkf("move", look, "a machine in maintenance mode answers at %s", n.IP))
		}

		return report.Checkf("move", look, "it does not answer at %s: %s", n.IP, talos.Message(err))
	})
	if err != nil {
		return report.From(n.Name, "move", look, err)
	}

	if err := r.sameMachine(ctx, n, look); err != nil {
		return err
	}

	c, err := r.t.Connect(ctx, n)
	if err != nil {
		return err
	}

	r.c.Close() //nolint:errcheck
	r.c, r.at = c, n

	report.Progress(n.Name, "answers at %s, where the new config put it", n.IP)

	return nil
}

// otherCPWait bounds the search for another control plane to remove a reflashed one's member through.
const otherCPWait = 2 * time.Minute

// clearReflashed: a machine in maintenance mode whose last apply recorded an etcd member was
// reflashed or replaced. Before it gets its config, its stale member is removed through another
// control plane and its old Node object deleted, so it joins etcd and Kubernetes afresh. What a
// disruption of it still owes is not on the Node (kube: OwedConfigMap), and runs once it is back.
func (r *applyRun) clearReflashed(ctx context.Context) error {
	n := r.n

	id := r.rec.MemberID()
	if id == 0 {
		return nil
	}

	report.Progress(n.Name, "in maintenance mode, but it was etcd member %016x when last reached: reflashed or replaced, so that member and its old Node go before the hand-over", id)

	others := r.t.OtherControlPlanes(n, r.at.IP, r.rec.IP)
	if len(others) == 0 {
		report.Progress(n.Name, "no other control plane in the talosconfig: its etcd went with its disk, nothing to remove")

		return nil
	}

	cp, c, seen := r.t.FirstAnswering(ctx, others, min(otherCPWait, wait.Remaining(ctx)))
	if c == nil && ctx.Err() != nil { // the command's own timeout, or a signal: nothing is handed over
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "no other control plane answered before: " + ctx.Err().Error(), Look: talos.EtcdLook(others[0])}
	}

	if c == nil {
		report.Progress(n.Name, "no other control plane answers (%s): the stale member cannot be removed now (Talos removes a member of the node's name itself when it joins, once etcd has a leader)", seen)

		return nil
	}

	defer c.Close() //nolint:errcheck

	if err := talos.RemoveStaleMember(ctx, c, n.Name, id, cp); err != nil {
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "the stale etcd member cannot be removed, so the config was not handed over: " + err.Error(), Look: talos.EtcdLook(cp)}
	}

	if r.noKube {
		report.Progress(n.Name, "--no-kubernetes: its old Node object is left")

		return nil
	}

	k, err := kube.From(ctx, r.secrets, c)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "kubeconfig", Detail: err.Error(), Look: "talosctl -n " + cp.IP + " kubeconfig"}
	}

	if err := kube.DeleteNode(ctx, k, n.Name); err != nil {
		return &report.Failure{Node: n.Name, Check: "node", Detail: "its old Node object cannot be deleted, so the config was not handed over: " + report.FirstLine(err), Look: kube.NodeLook(n.Name)}
	}

	return nil
}

// handOver gives a node in maintenance mode its config: Talos installs it and reboots on its own.
// On a fresh bring-up (no other control plane runs a bootstrapped etcd) it returns then, so the
// machines install side by side; on a bootstrapped cluster it waits until the machine is back and
// healthy (waitBack), as any changed node.
func (r *applyRun) handOver(ctx context.Context) error {
	look := fmt.Sprintf("talosctl -n %s apply-config --insecure --dry-run --file CONFIG; talosctl -n %s get machinestatus --insecure", r.at.IP, r.at.IP)

	bootstrapped, seen := r.bootstrappedElsewhere(ctx)

	// A failed apply may have been taken all the same: the node takes the config before its reply is
	// on the wire, and the install that follows ends every connection (a reply lost on the way, or a
	// link that drops, looks here like any other Unavailable). A node that took a config answers only a
	// client certificate from then on, so the insecure apply could never pass again: before each retry
	// the node is asked who it is, and one that answers this cluster's client certificate took it.
	failed := false

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		if failed {
			if s, _ := r.t.Classify(ctx, r.at); s == talos.Running { //nolint:errcheck
				report.Progress(r.n.Name, "the apply's reply did not come back, but it answers this cluster's client certificate now: it took the config")

				return nil
			}
		}

		failed = true

		c, err := talos.ConnectInsecure(ctx, r.at)
		if err != nil {
			return err
		}

		defer c.Close() //nolint:errcheck

		cctx, cancel := wait.Call(ctx)
		defer cancel()

		_, err = c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_AUTO})

		switch {
		case err == nil:
			return nil
		case talos.Transient(err):
			return report.Checkf("apply", look, "the node does not take the config yet: %s", talos.Message(err))
		default:
			return wait.Stop(report.Checkf("apply", look, "Talos refused the config: %s", talos.Message(err)))
		}
	})
	if err != nil {
		return report.From(r.n.Name, "apply", look, err)
	}

	if !bootstrapped {
		report.Progress(r.n.Name, "was in maintenance mode: config handed over; Talos installs %s and reboots on its own (etcd is not bootstrapped: %s; a fresh bring-up does not wait)", r.version, seen)

		return nil
	}

	report.Progress(r.n.Name, "was in maintenance mode: config handed over; etcd is bootstrapped (%s), so the step waits until it has installed %s, rebooted and is healthy", seen, r.version)

	return r.waitBack(ctx)
}

// clusterBootstrapped: etcd is bootstrapped somewhere, as the bootstrap tells (talos.AskEtcdOf: a member
// list that answers, or etcd data held; a cluster that lost quorum is bootstrapped, and must fail the etcd
// checks). An etcd that does not run over an empty data directory holds none, Preparing (pulling its image,
// waiting to join or for the bootstrap) or Failed (it gave up joining after Talos's EtcdJoinTimeout): a
// control plane seen so asks the others, since it may be joining a cluster they run. What cannot be told
// (a control plane that does not answer or cannot be read) counts as bootstrapped: the checks that follow
// then say what is wrong, rather than skipped.
func (r *applyRun) clusterBootstrapped(ctx context.Context) bool {
	if r.controlPlane() {
		if self := r.surveyEtcd(ctx, []input.Node{r.at})[0]; !self.Empty {
			return true
		}

		elsewhere, _ := r.bootstrappedElsewhere(ctx)

		return elsewhere
	}

	cps := r.t.OtherControlPlanes(r.n)
	seen := r.surveyEtcd(ctx, cps)

	for _, s := range seen {
		if !s.Empty {
			return true
		}
	}

	return len(cps) == 0
}
