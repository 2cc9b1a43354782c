// Package reset puts a node back in maintenance mode (STATE and EPHEMERAL wiped), and with
// --mode auto, what a Pulumi delete runs, removes what the cluster keeps of it.
package reset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/record"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Parse reads reset's arguments and stdin, contacting nothing; what it returns runs it.
//
// reset resets a node to maintenance mode: STATE and EPHEMERAL wiped, rebooted. auto (what a
// Pulumi delete runs) picks graceful or last itself, treats a machine that does not answer as
// dead, and removes what the cluster keeps of the node: its etcd member and its Node object.
func Parse(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("reset")

	var nodes input.NodeList

	f.Var(&nodes, "node", "NAME=IP of the node")
	mode := f.String("mode", "", "auto (graceful, or last for etcd's last member; a machine that does not answer is removed from the cluster as dead), graceful (leave etcd first) or last (the last control plane: no etcd leave)")
	timeout := f.Timeout()
	deadAfter := f.Duration("dead-after", 2*time.Minute, "auto: a machine that does not answer this long is dead (well under --timeout)")
	noKube := f.Bool("no-kubernetes", false, "auto: Talos steps only (the Node object is left)")

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	n, err := input.RequireOne(nodes, "--node")
	if err != nil {
		return nil, err
	}

	switch *mode {
	case "auto", "graceful", "last":
	default:
		return nil, input.Usagef("--mode must be auto, graceful or last")
	}

	if *mode == "auto" && (*deadAfter <= 0 || *deadAfter >= *timeout) {
		return nil, input.Usagef("--dead-after must be positive and shorter than --timeout")
	}

	s, err := talos.ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	r := &resetRun{s: s, n: n, deadAfter: *deadAfter, noKube: *noKube}

	return func(ctx context.Context) error { return r.start(ctx, *mode, *timeout) }, nil
}

// start is the reset: the talosconfig read, then auto (run) or the mode asked for, within timeout.
func (r *resetRun) start(ctx context.Context, mode string, timeout time.Duration) error {
	t, err := talos.New(r.s)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if mode == "auto" {
		r.t, r.rec, r.role = t, record.Last(r.n), configRole(r.s.MachineConfig)

		return r.run(ctx)
	}

	n := r.n
	look := resetLook(n)

	var state string

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		s, err := t.Classify(ctx, n)
		if s == talos.Unreachable {
			return report.Checkf("reach", look, "the node does not answer: %s", talos.Message(err))
		}

		state = s

		return nil
	}); err != nil {
		return report.From(n.Name, "reach", look, err)
	}

	if state == talos.Maintenance {
		report.Progress(n.Name, "already in maintenance mode: nothing to reset")

		return nil
	}

	c, err := t.Connect(ctx, n)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	if mode == "graceful" {
		if members, err := talos.EtcdMembers(ctx, c); err == nil && len(members) == 1 && members[0].GetHostname() == n.Name {
			return &report.Failure{Node: n.Name, Check: "etcd", Detail: "it is etcd's last member, which cannot leave: reset it with --mode last", Look: talos.EtcdLook(n)}
		}
	}

	return resetAndWait(ctx, t, n, c, mode)
}

func resetLook(n input.Node) string {
	return fmt.Sprintf("talosctl -n %s get machinestatus; talosctl -n %s dmesg", n.IP, n.IP)
}

// resetAndWait asks for the reset (graceful: Talos cordons, drains and leaves etcd first) and
// waits for the node to come back in maintenance mode.
func resetAndWait(ctx context.Context, t *talos.Talosconfig, n input.Node, c *client.Client, mode string) error {
	look := resetLook(n)
	req := &machineapi.ResetRequest{
		Graceful: mode == "graceful",
		Reboot:   true,
		SystemPartitionsToWipe: []*machineapi.ResetPartitionSpec{
			{Label: "STATE", Wipe: true},
			{Label: "EPHEMERAL", Wipe: true},
		},
	}

	cctx, cancelCall := wait.Call(ctx)
	err := c.ResetGeneric(cctx, req)

	cancelCall()

	if err != nil && !talos.Transient(err) {
		return &report.Failure{Node: n.Name, Check: "reset", Detail: talos.Message(err), Look: look}
	}

	report.Progress(n.Name, "reset (%s): waiting for it to come back in maintenance mode", mode)

	if err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		if s, _ := t.Classify(ctx, n); s != talos.Maintenance { //nolint:errcheck
			return report.Checkf("reset", look, "the node is %s, not back in maintenance mode", s)
		}

		return nil
	}); err != nil {
		return report.From(n.Name, "reset", look, err)
	}

	report.Progress(n.Name, "in maintenance mode")

	return nil
}

// configRole is the role a machine config gives ("" when there is none to read).
func configRole(raw string) string {
	if raw == "" {
		return ""
	}

	cfg, err := talos.LoadConfig(raw)
	if err != nil || cfg.Machine() == nil {
		return ""
	}

	switch cfg.Machine().Type() { //nolint:exhaustive
	case machine.TypeControlPlane, machine.TypeInit:
		return "controlplane"
	case machine.TypeWorker:
		return "worker"
	}

	return ""
}

// resetRun is one `reset` (--mode auto uses all of it): the node, what its last apply recorded,
// and how long a machine may stay silent before it counts as dead.
type resetRun struct {
	t         *talos.Talosconfig
	s         *input.Secrets
	n         input.Node
	rec       *record.Record
	deadAfter time.Duration
	noKube    bool
	role      string // from the machine config on stdin, when there is one
	renamed   string // the hostname the machine answers as now, when it is another node's
}

func (r *resetRun) run(ctx context.Context) error {
	at, state, err := r.find(ctx)
	if err != nil {
		return err
	}

	switch state {
	case talos.Unreachable:
		return r.gone(ctx)
	case talos.Maintenance:
		report.Progress(r.n.Name, "already in maintenance mode at %s: nothing to reset", at.IP)

		return r.forget(ctx, r.mayBeMember())
	}

	c, err := r.t.Connect(ctx, at)
	if err != nil {
		return err
	}

	defer c.Close() //nolint:errcheck

	mode, err := r.chooseMode(ctx, at, c)
	if err != nil {
		return err
	}

	if err := resetAndWait(ctx, r.t, at, c, mode); err != nil {
		return err
	}

	// A graceful reset left etcd itself; etcd's last member has nobody to leave to.
	return r.forget(ctx, false)
}

// mayBeMember: the node may still hold an etcd member (not known to be a worker).
func (r *resetRun) mayBeMember() bool {
	return r.role != "worker" || r.rec.MemberID() != 0
}

// find waits up to --dead-after for the machine to answer at its address, or where its last
// apply reached it. A running machine of another identity is not this one: it is left alone.
func (r *resetRun) find(ctx context.Context) (input.Node, string, error) {
	n := r.n
	candidates := []input.Node{n}

	if r.rec.Moved(n) {
		candidates = append(candidates, r.rec.At(n))
	}

	var (
		at           input.Node
		state        string
		said, warned bool
	)

	dctx, cancel := context.WithTimeout(ctx, r.deadAfter)
	defer cancel()

	err := wait.Poll(dctx, wait.Every, func(ctx context.Context) error {
		for _, cand := range candidates {
			s, _ := r.t.Classify(ctx, cand) //nolint:errcheck
			if s == talos.Unreachable {
				continue
			}

			if s == talos.Running && !r.isThisNode(ctx, cand, &warned) {
				continue
			}

			at, state = cand, s

			return nil
		}

		if !said {
			report.Progress(n.Name, "waiting up to %s for it to answer at %s", r.deadAfter, nodeIPs(candidates))

			said = true
		}

		return errors.New("no answer")
	})

	switch {
	case err == nil:
		report.Progress(n.Name, "answers at %s: %s", at.IP, state)

		return at, state, nil
	case ctx.Err() != nil: // the command's own timeout, or a signal
		return input.Node{}, "", &report.Failure{Node: n.Name, Check: "reach", Detail: ctx.Err().Error(), Look: resetLook(n)}
	}

	return input.Node{}, talos.Unreachable, nil
}

// isThisNode: the running machine at an address is this node. A node is its name (its etcd member
// and its Node object carry it): a machine that answers as another hostname is another node, or
// this machine renamed by the inventory (then that node lives on: r.renamed), and is left alone.
// Without a hostname to go by, the machine last reached there decides.
func (r *resetRun) isThisNode(ctx context.Context, at input.Node, warned *bool) bool {
	n := r.n
	host := talos.HostnameAt(ctx, r.t, at)

	id, known := "", r.rec != nil && r.rec.Machine != ""
	if known {
		id = talos.IdentityAt(ctx, r.t, at, r.rec.Machine)
	}

	other := known && id != "" && id != r.rec.Machine

	switch {
	case host != "" && host != n.Name && other:
		if !*warned {
			report.Progress(n.Name, "another machine (%s, node %s) answers at %s, not this node's (%s): it is left alone", id, host, at.IP, r.rec.Machine)

			*warned = true
		}

		return false
	case host != "" && host != n.Name:
		if r.renamed == "" {
			report.Progress(n.Name, "the machine at %s answers as %s now: that node is left alone", at.IP, host)
		}

		r.renamed = host

		return false
	case host == "" && other:
		if !*warned {
			report.Progress(n.Name, "another machine (%s) answers at %s, not this node's (%s): it is left alone", id, at.IP, r.rec.Machine)

			*warned = true
		}

		return false
	case other:
		report.Progress(n.Name, "another machine than when last reached answers at %s (%s, was %s), running as %s: this node, on new hardware", at.IP, id, r.rec.Machine, n.Name)
	}

	return true
}

// chooseMode: graceful, unless the node is etcd's last member, which cannot leave.
func (r *resetRun) chooseMode(ctx context.Context, at input.Node, c *client.Client) (string, error) {
	n := r.n

	members, err := talos.EtcdMembers(ctx, c)

	switch {
	case status.Code(err) == codes.Unimplemented && strings.Contains(err.Error(), "control plane"):
		report.Progress(n.Name, "a worker: graceful reset (Talos cordons and drains it first)")

		return "graceful", nil
	case err != nil:
		// Its etcd holds no data (not running over an empty data directory: Preparing, or Failed once it gave
		// up joining; talos.AskEtcdOf): nothing to leave. Anything else cannot be told.
		if self := r.t.AskEtcdOf(ctx, at); self.Empty {
			report.Progress(n.Name, "a control plane whose etcd never started (it %s): nothing to leave, reset without leaving etcd", self.Detail)

			return "last", nil
		}

		return "", &report.Failure{Node: n.Name, Check: "etcd", Detail: fmt.Sprintf("etcd's member list does not answer (%s): whether it may leave etcd cannot be told, so nothing was reset", talos.Message(err)), Look: talos.EtcdLook(at)}
	case len(members) == 1 && members[0].GetHostname() == n.Name:
		report.Progress(n.Name, "etcd's last member, which cannot leave: reset without leaving etcd (the cluster's etcd ends with it)")

		return "last", nil
	}

	report.Progress(n.Name, "etcd has %d members (%s): graceful reset (it leaves etcd; Talos cordons and drains it first)", len(members), strings.Join(talos.MemberNames(members), ", "))

	return "graceful", nil
}

// gone is a machine that did not answer: removing it from the inventory is the user's intent, so
// the cluster forgets it, and it says plainly that nothing was
func (r *resetRun) gone(ctx context.Context) error {
	n := r.n

	if r.renamed != "" {
		// Its etcd member may still carry this name until its etcd restarts: it is the live node's.
		report.Progress(n.Name, "%s is %s now, so nothing is reset and its etcd member is left to it; only the Node object %s goes", n.Name, r.renamed, n.Name)

		return r.forget(ctx, false)
	}

	where := n.IP

	if r.rec.Moved(n) {
		where += fmt.Sprintf(" nor at %s, where it was last reached", r.rec.IP)
	}

	report.Progress(n.Name, "did not answer within %s at %s: treated as dead, since it is being removed", r.deadAfter, where)

	if err := r.forget(ctx, r.mayBeMember()); err != nil {
		return err
	}

	report.Progress(n.Name, "removed from the cluster without a reset: nothing on the machine was wiped (if it comes back it still holds its Talos config and data: wipe it before reusing it)")

	return nil
}

// forget removes what the cluster keeps of the node, through another control plane: its etcd
// member (when it may still be one) and its Node object. When no other control plane answers,
// the whole cluster is being destroyed, and both go with it.
func (r *resetRun) forget(ctx context.Context, member bool) error {
	n := r.n

	var also []string
	if r.rec != nil {
		also = append(also, r.rec.IP)
	}

	others := r.t.OtherControlPlanes(n, also...)
	if len(others) == 0 {
		report.Progress(n.Name, "no other control plane in the talosconfig: the cluster goes with this node, so no etcd member or Node object is left to remove")

		return nil
	}

	cp, c, seen := r.t.FirstAnswering(ctx, others, min(r.deadAfter, wait.Remaining(ctx)))
	if c == nil && ctx.Err() != nil { // the command's own timeout, or a signal: no verdict on the cluster
		return &report.Failure{Node: n.Name, Check: "reach", Detail: "no other control plane answered before: " + ctx.Err().Error(), Look: talos.EtcdLook(others[0])}
	}

	if c == nil {
		report.Progress(n.Name, "no other control plane answers (%s): the whole cluster is being destroyed; its etcd member and Node object go with it", seen)

		return nil
	}

	defer c.Close() //nolint:errcheck

	// Before the first bootstrap (every other control plane holds no etcd data: bootstrap's rule) there is no
	// member to remove: a valinor off for good, taken out of the inventory during a bring-up.
	if member && r.noEtcdYet(ctx, others) {
		report.Progress(n.Name, "etcd is not bootstrapped (no other control plane holds etcd data): no member to remove")

		member = false
	}

	if member {
		if err := talos.RemoveStaleMember(ctx, c, n.Name, r.rec.MemberID(), cp); err != nil {
			return &report.Failure{Node: n.Name, Check: "etcd", Detail: "its etcd member cannot be removed: " + err.Error(), Look: talos.EtcdLook(cp)}
		}
	}

	if r.noKube {
		report.Progress(n.Name, "--no-kubernetes: its Node object is left")

		return nil
	}

	k, err := kube.From(ctx, r.s, c)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "kubeconfig", Detail: err.Error(), Look: "talosctl -n " + cp.IP + " kubeconfig"}
	}

	if err := runOwed(ctx, k, n.Name, r.s); err != nil {
		return err
	}

	if err := kube.DeleteNode(ctx, k, n.Name); err != nil {
		return &report.Failure{Node: n.Name, Check: "node", Detail: "its Node object cannot be deleted: " + report.FirstLine(err), Look: kube.NodeLook(n.Name)}
	}

	return nil
}

func nodeIPs(nodes []input.Node) string {
	var ips []string
	for _, n := range nodes {
		ips = append(ips, n.IP)
	}

	return strings.Join(ips, ", ")
}
