// Package apply is the per-node step: hand a node its config and roll what it changes (a reboot,
// a Talos upgrade) behind etcd, drain and health checks, leaving the node healthy.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/record"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/staticpods"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// applyRun is one `apply`: a node, the config it must end up with, and what the command may use.
type applyRun struct {
	t        *talos.Talosconfig
	n        input.Node
	role     string
	secrets  *input.Secrets
	cfg      coreconfig.Provider
	image    string
	version  string // what machine.install.image makes the node run
	schema   string
	pauses   []kube.Workload
	snapshot string
	noKube   bool

	c            *client.Client
	lifecycle    bool
	bootstrapped bool
	kube         *kube.Client
	// pods: the control plane's static pods as this run's change leaves them (staticpods.go); stable:
	// how long a restarted one must run untouched (--pods-stable).
	pods   *staticpods.Watch
	stable time.Duration
	// servedPods: some Node was Ready during this run (readiness.go); saidNoCNI: the step said none is, for want of a CNI.
	servedPods, saidNoCNI bool

	rec     *record.Record // what this step's last apply found (PULUMI_COMMAND_STDOUT), nil when none
	at      input.Node     // where the node answers: n, or where the record last reached it
	machine string         // the identity of the machine that answers ("" when it cannot be told)
}

func (r *applyRun) controlPlane() bool { return r.role == "controlplane" }

func (r *applyRun) talosLook(what string) string {
	return fmt.Sprintf("talosctl -n %s %s", r.n.IP, what)
}

// Parse reads apply's arguments and stdin, contacting nothing; what it returns is the step (the
// machine config's content checked first).
func Parse(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("apply")

	var (
		nodes  input.NodeList
		pauses input.StringList
	)

	f.Var(&nodes, "node", "NAME=IP of the node")
	role := f.String("role", "", "controlplane or worker")
	timeout := f.Timeout()
	snapshot := f.String("etcd-snapshot", "", "save an etcd snapshot here before anything changes (the chain's first control plane)")
	f.Var(&pauses, "pause", "KIND/NAMESPACE/NAME of a Deployment or StatefulSet to scale to 0 around a disruption (repeatable)")
	noKube := f.Bool("no-kubernetes", false, "Talos steps only: no drain, pause, hooks or Kubernetes checks")
	stable := f.Duration("pods-stable", staticpods.DefaultStable, "how long a control plane's restarted static pod must run untouched (and the pods Talos serves stay unchanged after a change) before they count")

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

	if *role != "controlplane" && *role != "worker" {
		return nil, input.Usagef("--role must be controlplane or worker")
	}

	if *stable <= 0 {
		return nil, input.Usagef("--pods-stable must be positive")
	}

	r := &applyRun{n: n, role: *role, snapshot: *snapshot, noKube: *noKube, stable: *stable}

	for _, p := range pauses {
		w, err := kube.ParseWorkload(p)
		if err != nil {
			return nil, input.Usagef("%s", err)
		}

		r.pauses = append(r.pauses, w)
	}

	if r.secrets, err = input.ReadSecrets(stdin); err != nil {
		return nil, err
	}

	if err := r.secrets.Require("talosconfig", "machineConfig"); err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return r.start(ctx, *timeout) }, nil
}

// start checks what stdin holds (the talosconfig, and a machine config for the node's role that names
// its Talos version), reads the step's last record, and runs the step within timeout.
func (r *applyRun) start(ctx context.Context, timeout time.Duration) error {
	var err error

	if r.t, err = talos.New(r.secrets); err != nil {
		return err
	}

	if r.cfg, err = talos.LoadConfig(r.secrets.MachineConfig); err != nil {
		return input.Usagef("stdin: machineConfig is not a Talos machine config: %s", report.FirstLine(err))
	}

	if r.cfg.Machine() == nil {
		return input.Usagef("stdin: machineConfig has no v1alpha1 machine section")
	}

	isCP := r.cfg.Machine().Type() == machine.TypeControlPlane || r.cfg.Machine().Type() == machine.TypeInit
	if isCP != r.controlPlane() {
		return input.Usagef("--role %s, but the machine config is for a %s", r.role, r.cfg.Machine().Type())
	}

	r.image = r.cfg.Machine().Install().Image()
	if r.version, r.schema = talos.ParseInstaller(r.image); r.version == "" {
		return input.Usagef("the machine config's machine.install.image %q has no version tag", r.image)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	r.rec = record.Last(r.n)

	return r.run(ctx)
}

// run is the step, then its record as stdout's one line: what the next update or delete reads back.
func (r *applyRun) run(ctx context.Context) error {
	defer func() {
		if r.c != nil {
			r.c.Close() //nolint:errcheck
		}
	}()

	if err := r.steps(ctx); err != nil {
		return r.noteOwed(err)
	}

	rec := record.Record{Node: r.n.Name, IP: r.at.IP, Machine: r.machine}

	if r.c != nil && r.controlPlane() && r.bootstrapped {
		if id := r.memberID(ctx); id != 0 {
			rec.EtcdMember = fmt.Sprintf("%016x", id)
		}
	}

	return record.Print(rec)
}

// memberID is the node's own etcd member ID (0 when it cannot be read).
func (r *applyRun) memberID(ctx context.Context) uint64 {
	if st, err := talos.EtcdStatus(ctx, r.c); err == nil && st.GetMemberId() != 0 {
		return st.GetMemberId()
	}

	members, err := talos.EtcdMembers(ctx, r.c)
	if err != nil {
		return 0
	}

	for _, m := range members {
		if m.GetHostname() == r.n.Name {
			return m.GetId()
		}
	}

	return 0
}

func (r *applyRun) steps(ctx context.Context) error {
	state, err := r.reach(ctx)
	if err != nil {
		return err
	}

	if state == talos.Maintenance {
		if err := r.checkMaintenanceMachine(ctx); err != nil {
			return err
		}

		if err := r.clearReflashed(ctx); err != nil {
			return err
		}

		return r.handOver(ctx)
	}

	if r.c, err = r.t.Connect(ctx, r.at); err != nil {
		return err
	}

	return r.onRunning(ctx)
}

// onRunning is the step for a machine running with the cluster's client certificate (r.c): its version,
// schematic and config read, and whatever differs rolled, or its health checked.
//
//nolint:gocyclo,cyclop
func (r *applyRun) onRunning(ctx context.Context) error {
	n := r.n

	running, err := talos.Version(ctx, r.c)
	if err != nil {
		return report.From(n.Name, "version", r.talosLook("version"), err)
	}

	r.lifecycle = lifecycleAPI(running)

	runningSchematic, err := talos.Schematic(ctx, r.c)
	if err != nil {
		return report.From(n.Name, "schematic", r.talosLook("get extensions"), err)
	}

	active, persistent, err := talos.MachineConfigs(ctx, r.c)
	if err != nil {
		return report.From(n.Name, "config", r.talosLook("get machineconfig"), err)
	}

	same, err := talos.SameConfig(active, r.cfg)
	if err != nil {
		return err
	}

	if !same {
		if err := r.refuseDowngrade(active); err != nil {
			return err
		}
	}

	// A config staged by an earlier run that never rebooted: only the reboot is missing.
	staged := false
	if !same {
		if samePersistent, err := talos.SameConfig(persistent, r.cfg); err == nil && samePersistent {
			staged = true
		}
	}

	upgrade := running != r.version || runningSchematic != r.schema

	report.Progress(n.Name, "runs Talos %s (schematic %s); the config installs %s (schematic %s)", running, orNone(runningSchematic), r.version, orNone(r.schema))

	r.bootstrapped = r.clusterBootstrapped(ctx)
	if !r.bootstrapped {
		report.Progress(n.Name, "etcd is not bootstrapped yet: Talos steps only (no etcd, drain or Kubernetes checks until the bootstrap)")
	}

	if !r.noKube && r.bootstrapped {
		if err := r.connectKube(ctx); err != nil {
			return err
		}
	}

	// The snapshot comes before anything changes on any node: the first control plane's apply
	// carries --etcd-snapshot, whatever that node itself turns out to need.
	if r.snapshot != "" {
		if err := r.takeSnapshot(ctx); err != nil {
			return err
		}
	}

	if same && !upgrade {
		report.Progress(n.Name, "config unchanged and Talos as configured: checking health only")

		// What an earlier run left owed goes first: a health check that fails must not leave noout set.
		if err := r.runOwedHooks(ctx); err != nil {
			return err
		}

		if err := r.healthy(ctx); err != nil {
			return err
		}

		return r.resumeLeftovers(ctx)
	}

	// Refuse before touching anything: no change to a control plane while etcd is unhealthy.
	if r.controlPlane() && r.bootstrapped {
		if err := r.etcdPreflight(ctx, false); err != nil {
			return err
		}
	}

	reboot := staged

	switch {
	case staged:
		report.Progress(n.Name, "the config was staged by an earlier run: it needs the reboot still")
	case !same:
		if reboot, err = r.dryRun(ctx); err != nil {
			return err
		}
	}

	// A reboot or an upgrade is coming: refuse now, before the config changes, if another machine is left down
	// (one at a time) or if it would cost quorum.
	if reboot || upgrade {
		if err := r.oneAtATime(ctx); err != nil {
			return err
		}
	}

	if (reboot || upgrade) && r.controlPlane() && r.bootstrapped {
		if err := r.etcdPreflight(ctx, true); err != nil {
			return err
		}
	}

	if !same && !reboot {
		if err := r.applyNow(ctx, active); err != nil {
			return err
		}

		if err := r.runOwedHooks(ctx); err != nil {
			return err
		}

		// Healthy again before anything else: a control plane restarts its components now.
		if err := r.healthy(ctx); err != nil {
			return err
		}

		if !upgrade {
			return r.resumeLeftovers(ctx)
		}
	}

	return r.disrupt(ctx, reboot && !same, upgrade)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}

	return s
}

// lifecycleAPI: Talos 1.13 serves LifecycleService.Upgrade (talosctl's range: >1.13.0-alpha.2).
func lifecycleAPI(tag string) bool {
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)
	if len(parts) < 2 {
		return true
	}

	major, _ := strconv.Atoi(parts[0])   //nolint:errcheck
	minor, err := strconv.Atoi(parts[1]) //nolint:errcheck
	if err != nil {
		return true
	}

	return major > 1 || (major == 1 && minor >= 13)
}

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

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
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

// connectKube is the kubeconfig from stdin, else the admin kubeconfig a control plane hands out
// (as `talosctl kubeconfig` fetches it).
func (r *applyRun) connectKube(ctx context.Context) error {
	text := r.secrets.Kubeconfig
	if text == "" {
		var err error
		if text, err = r.t.FetchKubeconfig(ctx, r.at, r.controlPlane()); err != nil {
			return report.From(r.n.Name, "kubeconfig", "talosctl kubeconfig --nodes CONTROL_PLANE_IP", err)
		}
	}

	k, err := kube.New(text, "")
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "kubeconfig", Detail: err.Error(), Look: "kubectl config view"}
	}

	r.kube = k

	return nil
}

// dryRun asks the node what the config change needs (Talos's CanApplyImmediate): true when a reboot.
func (r *applyRun) dryRun(ctx context.Context) (bool, error) {
	look := r.talosLook("apply-config --dry-run --file CONFIG")

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_AUTO, DryRun: true})
	if err != nil {
		return false, &report.Failure{Node: r.n.Name, Check: "dry-run", Detail: "Talos refused the config: " + talos.Message(err), Look: look}
	}

	if len(resp.GetMessages()) == 0 {
		return false, &report.Failure{Node: r.n.Name, Check: "dry-run", Detail: "no answer", Look: look}
	}

	reboot := resp.GetMessages()[0].GetMode() == machineapi.ApplyConfigurationRequest_REBOOT
	if reboot {
		report.Progress(r.n.Name, "config changed: Talos needs a reboot to apply it")
	} else {
		report.Progress(r.n.Name, "config changed: Talos applies it without a reboot")
	}

	return reboot, nil
}

// k8sImages are the Kubernetes images a config makes the node run, by component.
func k8sImages(cfg coreconfig.Provider, controlPlane bool) map[string]string {
	images := map[string]string{"kubelet": cfg.Machine().Kubelet().Image()}

	if controlPlane && cfg.Cluster() != nil {
		images["kube-apiserver"] = cfg.Cluster().APIServer().Image()
		images["kube-controller-manager"] = cfg.Cluster().ControllerManager().Image()
		images["kube-scheduler"] = cfg.Cluster().Scheduler().Image()
		images["etcd"] = cfg.Cluster().Etcd().Image()
	}

	return images
}

// applyNow applies a change Talos takes without a reboot, new Kubernetes images pulled first so
// the restart that follows is short.
func (r *applyRun) applyNow(ctx context.Context, active coreconfig.Provider) error {
	look := r.talosLook("apply-config --mode no-reboot --dry-run --file CONFIG")

	if r.bootstrapped {
		before := map[string]string{}
		if active != nil && active.Machine() != nil {
			before = k8sImages(active, r.controlPlane())
		}

		for _, component := range []string{"kubelet", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			image, ok := k8sImages(r.cfg, r.controlPlane())[component]
			if !ok || image == "" || image == before[component] {
				continue
			}

			ci := talos.CRIContainerd()
			if component == "kubelet" || component == "etcd" {
				ci = talos.SystemContainerd() // Talos runs these itself, from its system namespace
			}

			report.Progress(r.n.Name, "pulling %s", image)

			if err := talos.PullTo(ctx, r.c, r.lifecycle, ci, image); err != nil {
				return &report.Failure{Node: r.n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", image, talos.Message(err)), Look: r.talosLook("image pull " + image)}
			}
		}
	}

	if r.controlPlane() && r.bootstrapped && r.kube != nil {
		if err := r.noteChanging(ctx, active); err != nil {
			return err
		}
	}

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	if _, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
		return &report.Failure{Node: r.n.Name, Check: "apply", Detail: "Talos refused the config: " + talos.Message(err), Look: look}
	}

	report.Progress(r.n.Name, "config applied without a reboot")

	if r.moving() {
		return r.follow(ctx)
	}

	return nil
}

// healthy waits until the node is what a finished step leaves: Talos running and ready, its etcd
// member started and healthy with no alarm, and (with Kubernetes) its Node Ready, running the
// kubelet and control plane images its config names.
func (r *applyRun) healthy(ctx context.Context) error {
	images := k8sImages(r.cfg, r.controlPlane())
	said := ""

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		err := r.healthOnce(ctx, images)
		if err != nil {
			var c *report.Check
			if errors.As(err, &c) && c.Name != said {
				report.Progress(r.n.Name, "waiting: %s: %s", c.Name, c.Err)

				said = c.Name
			}
		}

		return err
	})
	if err != nil {
		return report.From(r.n.Name, "health", r.talosLook("get machinestatus"), err)
	}

	report.Progress(r.n.Name, "healthy")

	return nil
}

func (r *applyRun) healthOnce(ctx context.Context, images map[string]string) error {
	ms, err := talos.MachineStatus(ctx, r.c)
	if err != nil {
		return report.Checkf("machine-status", r.talosLook("get machinestatus"), "%s", talos.Message(err))
	}

	if _, err := r.machineReady(ctx, ms); err != nil {
		return err
	}

	if !r.bootstrapped {
		return nil
	}

	if r.controlPlane() {
		members, err := r.t.EtcdReport(ctx, r.n, r.c)
		if err != nil {
			return report.Checkf("etcd", talos.EtcdLook(r.n), "%s", err)
		}

		found := false
		for _, m := range members {
			found = found || m.GetHostname() == r.n.Name
		}

		if !found {
			return report.Checkf("etcd", talos.EtcdLook(r.n), "%s is not an etcd member (members: %s)", r.n.Name, strings.Join(talos.MemberNames(members), ", "))
		}
	}

	if r.kube == nil {
		return nil
	}

	if err := r.nodeCheck(ctx); err != nil {
		return err
	}

	if want := kube.TagOf(images["kubelet"]); want != "" {
		got, err := r.kube.KubeletVersion(ctx, r.n.Name)
		if err != nil {
			return report.Checkf("kubelet", kube.NodeLook(r.n.Name), "%s", report.FirstLine(err))
		}

		if got != want {
			return report.Checkf("kubelet", kube.NodeLook(r.n.Name), "the kubelet reports %s, the config names %s", got, want)
		}
	}

	if r.controlPlane() {
		if err := r.podsHealthy(ctx); err != nil {
			return err
		}
	}

	return nil
}

// uncordonLeft uncordons the Node an earlier, interrupted run left cordoned (it failed, or was stopped,
// after the reboot).
func (r *applyRun) uncordonLeft(ctx context.Context) error {
	left, err := r.kube.LeftCordoned(ctx, r.n.Name)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(r.n.Name)}
	}

	if left {
		if err := r.kube.Cordon(ctx, r.n.Name, false); err != nil {
			return &report.Failure{Node: r.n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(r.n.Name)}
		}

		report.Progress(r.n.Name, "uncordoned (an earlier run left it cordoned)")
	}

	return nil
}

// resumeLeftovers uncordons the Node, runs the after hooks owed, and restores the workloads an earlier,
// interrupted run left cordoned, owed and paused (the first two are done already when runOwedHooks ran).
func (r *applyRun) resumeLeftovers(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	if err := r.uncordonLeft(ctx); err != nil {
		return err
	}

	if err := r.runAfterHooks(ctx, false); err != nil {
		return err
	}

	for _, w := range r.pauses {
		if err := r.kube.Resume(ctx, r.n.Name, w); err != nil {
			return &report.Failure{Node: r.n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, report.FirstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
		}
	}

	return nil
}

// disrupt takes the node down once: a staged config, a Talos upgrade, or both (the upgrade's
// reboot activates the staged config), behind the etcd checks, hooks, pauses and a drain.
//
//nolint:gocyclo,cyclop
func (r *applyRun) disrupt(ctx context.Context, stage, upgrade bool) error {
	n := r.n

	if r.controlPlane() && r.bootstrapped {
		if err := r.etcdPreflight(ctx, true); err != nil {
			return err
		}
	}

	if upgrade {
		report.Progress(n.Name, "pulling the installer %s", r.image)

		if err := talos.PullImage(ctx, r.c, r.lifecycle, r.image); err != nil {
			return &report.Failure{Node: n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", r.image, talos.Message(err)), Look: r.talosLook("image pull --namespace system " + r.image)}
		}
	}

	if err := r.disruptionAllowed(ctx); err != nil {
		return err
	}

	// Whether the Node's kubelet reports its boot (every kubelet does: waitNodeOfThisBoot): after the reboot the
	// Node must be the new boot's, since the old one's Ready stays until the node lifecycle controller's grace ends.
	reportsBoot := false
	if r.kube != nil {
		var err error
		if reportsBoot, err = bootReported(ctx, wait.Every, func(ctx context.Context) (string, error) { return r.kube.NodeBootID(ctx, n.Name) }); err != nil {
			return &report.Failure{Node: n.Name, Check: "node", Detail: "whether the Node reports its boot cannot be read, so nothing was changed: " + report.FirstLine(err), Look: kube.NodeLook(n.Name)}
		}
	}

	// From here on a failure before the reboot puts Kubernetes back as it was, unless the machine's next
	// boot already brings a change (pending): then it stays drained, whatever reboots it.
	prepared, err := r.prepareKube(ctx)
	if err != nil {
		return r.unprepareKube(prepared, err)
	}

	pending := ""

	if stage {
		cctx, cancel := wait.Call(ctx)
		_, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_STAGED})

		cancel()

		if err != nil {
			return r.unprepareKube(prepared, &report.Failure{Node: n.Name, Check: "apply", Detail: "Talos refused the config: " + talos.Message(err), Look: r.talosLook("apply-config --mode staged --dry-run --file CONFIG")})
		}

		report.Progress(n.Name, "config staged for the next boot")

		pending = "the staged config"
	}

	before, err := talos.BootID(ctx, r.c)
	if err != nil {
		return r.notRebooted(prepared, pending, &report.Failure{Node: n.Name, Check: "boot-id", Detail: talos.Message(err), Look: r.talosLook("read /proc/sys/kernel/random/boot_id")})
	}

	if upgrade {
		if installed, err := r.upgrade(ctx); err != nil {
			if installed != "" {
				pending = joinPending(installed, pending)
			}

			return r.notRebooted(prepared, pending, err)
		}
	} else {
		report.Progress(n.Name, "rebooting")

		if err := r.reboot(ctx); err != nil {
			return r.notRebooted(prepared, pending, err)
		}
	}

	// The node is going down: a failure from here on leaves it cordoned, for a person to look at.
	if r.moving() {
		if err := r.follow(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if err := r.waitReboot(ctx, before); err != nil {
		return r.withLeftovers(err, prepared)
	}

	if err := r.waitRunning(ctx); err != nil {
		return r.withLeftovers(err, prepared)
	}

	if upgrade {
		if err := r.checkVersion(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if stage {
		active, _, err := talos.MachineConfigs(ctx, r.c)
		if err == nil {
			var same bool
			if same, err = talos.SameConfig(active, r.cfg); err == nil && !same {
				err = errors.New("the staged config is not the active one after the reboot")
			}
		}

		if err != nil {
			return r.withLeftovers(&report.Failure{Node: n.Name, Check: "config", Detail: err.Error(), Look: r.talosLook("get machineconfig -o yaml")}, prepared)
		}
	}

	if reportsBoot {
		if err := r.waitNodeOfThisBoot(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if r.kube != nil {
		if err := wait.Poll(ctx, wait.Every, r.nodeCheck); err != nil {
			return r.withLeftovers(report.From(n.Name, "node-ready", kube.NodeLook(n.Name), err), prepared)
		}
	}

	if err := r.unprepareKubeChecked(ctx, prepared); err != nil {
		return err
	}

	r.pods = nil // a boot renders every pod anew: the ones Talos serves now are the ones

	return r.healthy(ctx)
}

// notRebooted is a failure before the machine was asked to reboot. With nothing pending, Kubernetes is put back
// (unprepareKube). With a change the machine's next boot brings (a staged config, a Talos installed or being
// installed), the drain stays as it is: that boot may come from anything (a power cut, a person's reboot), and
// it must find the node drained, Ceph's noout set and Argo CD paused, as our own reboot would. The next run of
// the step finds the machine not yet as configured and goes through the disruption again (a Node it left
// cordoned is its own: the mark), or, if that boot came first, finds it done and puts Kubernetes back.
func (r *applyRun) notRebooted(p prepared, pending string, cause error) error {
	if pending == "" {
		return r.unprepareKube(p, cause)
	}

	var f *report.Failure
	if errors.As(cause, &f) {
		f.Detail += fmt.Sprintf("; %s takes effect at the machine's next boot, whatever reboots it, so it is left drained until `pulumi up` reboots it", pending)
	}

	return r.withLeftovers(cause, p)
}

// joinPending is what the next boot brings, the installed Talos first.
func joinPending(a, b string) string {
	if b == "" {
		return a
	}

	return a + " and " + b
}

// prepared is what prepareKube did, so it can be undone.
type prepared struct {
	hooks     bool
	afterOwed []string // the after hooks the Node's mark names, until they ran
	paused    []kube.Workload
	cordoned  bool
}

func (r *applyRun) prepareKube(ctx context.Context) (prepared, error) {
	var p prepared

	if r.kube == nil {
		return p, nil
	}

	n := r.n

	owed, err := r.markAfterHooks(ctx)
	if err != nil {
		return p, err
	}

	p.afterOwed = owed

	for _, job := range r.secrets.Before {
		p.hooks = true

		if err := r.kube.RunJob(ctx, n.Name, job); err != nil {
			return p, report.From(n.Name, "hook", "kubectl get jobs -A; kubectl logs job/NAME -n NAMESPACE", report.Wrap("hook", "kubectl get jobs -A", err))
		}
	}

	for _, w := range r.pauses {
		p.paused = append(p.paused, w)

		if err := r.kube.Pause(ctx, n.Name, w); err != nil {
			return p, report.From(n.Name, "pause", fmt.Sprintf("kubectl -n %s get %s %s", w.Namespace, strings.ToLower(w.Kind), w.Name), err)
		}
	}

	report.Progress(n.Name, "cordon")

	p.cordoned = true

	if err := r.kube.Cordon(ctx, n.Name, true); err != nil {
		return p, &report.Failure{Node: n.Name, Check: "cordon", Detail: report.FirstLine(err), Look: kube.NodeLook(n.Name)}
	}

	report.Progress(n.Name, "drain")

	if err := r.kube.Drain(ctx, n.Name, wait.Remaining(ctx)); err != nil {
		look := fmt.Sprintf("kubectl get pods -A -o wide --field-selector spec.nodeName=%s; kubectl get pdb -A", n.Name)

		return p, &report.Failure{Node: n.Name, Check: "drain", Detail: report.FirstLine(err), Look: look}
	}

	return p, nil
}

// unprepareKube undoes prepareKube after a failure before the reboot, and returns that failure
// (best effort: the failure being reported matters more; what the undo could not put back, it names).
func (r *applyRun) unprepareKube(p prepared, cause error) error {
	if r.kube == nil {
		return cause
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait.UndoTimeout)
	defer cancel()

	err := r.undo(ctx, p)
	if err == nil {
		return cause
	}

	report.Progress(r.n.Name, "could not undo: %s", err)

	var f *report.Failure
	if !errors.As(cause, &f) {
		return cause
	}

	// What is left: the after hooks still owed (read afresh: the undo may have used up its minute).
	rctx, rcancel := context.WithTimeout(context.Background(), wait.CallTimeout)
	defer rcancel()

	left := "the next run of this step finishes it"
	if owed, _ := r.owed(rctx); len(owed) > 0 { //nolint:errcheck // a note on a failure
		left = owedNote(r.n.Name, owed)
	}

	f.Detail += fmt.Sprintf(" (and putting Kubernetes back failed: %s; %s)", report.FirstLine(err), left)

	return cause
}

func (r *applyRun) unprepareKubeChecked(ctx context.Context, p prepared) error {
	if r.kube == nil {
		return nil
	}

	return r.undo(ctx, p)
}

func (r *applyRun) undo(ctx context.Context, p prepared) error {
	n := r.n

	if p.cordoned {
		if err := r.kube.Cordon(ctx, n.Name, false); err != nil {
			return &report.Failure{Node: n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(n.Name)}
		}

		report.Progress(n.Name, "uncordoned")
	}

	// This disruption's own, and any an earlier run left owed.
	if err := r.runAfterHooks(ctx, p.hooks); err != nil {
		return err
	}

	for _, w := range p.paused {
		if err := r.kube.Resume(ctx, n.Name, w); err != nil {
			return &report.Failure{Node: n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, report.FirstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
		}
	}

	return nil
}

// withLeftovers says what a failure after the reboot leaves behind for a person.
func (r *applyRun) withLeftovers(err error, p prepared) error {
	var f *report.Failure
	if !errors.As(err, &f) {
		return err
	}

	var left []string
	if p.cordoned {
		left = append(left, "the Node is left cordoned")
	}

	for _, w := range p.paused {
		left = append(left, fmt.Sprintf("%s is left scaled to 0 (replicas in its %s annotation)", w, kube.PausedAnnotation))
	}

	if len(p.afterOwed) > 0 {
		left = append(left, owedNote(r.n.Name, p.afterOwed))
	}

	if len(left) > 0 {
		f.Detail += " (" + strings.Join(left, "; ") + ")"
	}

	return f
}

// takeSnapshot saves etcd to the operator's machine (a control plane of a bootstrapped cluster only).
func (r *applyRun) takeSnapshot(ctx context.Context) error {
	n := r.n

	if !r.controlPlane() || !r.bootstrapped {
		report.Progress(n.Name, "no etcd snapshot: %s", map[bool]string{true: "etcd is not bootstrapped yet", false: "not a control plane"}[r.controlPlane()])

		return nil
	}

	if err := talos.SaveSnapshot(ctx, r.c, r.snapshot); err != nil {
		return &report.Failure{Node: n.Name, Check: "etcd-snapshot", Detail: talos.Message(err), Look: r.talosLook("etcd snapshot " + r.snapshot)}
	}

	report.Progress(n.Name, "etcd snapshot saved to %s", r.snapshot)

	return nil
}

// etcdPreflight refuses to change a control plane unless etcd is healthy and, before taking it
// down, keeps its quorum without this member.
func (r *applyRun) etcdPreflight(ctx context.Context, down bool) error {
	n := r.n

	members, err := r.t.EtcdReport(ctx, n, r.c)
	if err != nil {
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "etcd is not healthy, so this control plane is left untouched: " + err.Error(), Look: talos.EtcdLook(n)}
	}

	if !down {
		report.Progress(n.Name, "etcd healthy: %d members (%s)", len(members), strings.Join(talos.MemberNames(members), ", "))

		return nil
	}

	// A single member cannot keep quorum through anything: a one-control-plane cluster accepts
	// that its API pauses (Talos allows it too); two members lose quorum with either one down.
	switch len(members) {
	case 2:
		return &report.Failure{Node: n.Name, Check: "etcd", Detail: "etcd has 2 members: taking one down loses quorum (add a third control plane, or remove one)", Look: talos.EtcdLook(n)}
	case 1:
		report.Progress(n.Name, "etcd has a single member: the Kubernetes API pauses while this node is down")
	default:
		report.Progress(n.Name, "etcd healthy: %d members (%s), quorum kept without this one", len(members), strings.Join(talos.MemberNames(members), ", "))
	}

	return nil
}

// upgrade installs the new Talos: LifecycleService on Talos 1.13+ (install only, then our reboot),
// the legacy MachineService.Upgrade before (which reboots by itself). On a failure, installed names
// the Talos the machine's next boot may bring ("" when none: the installer said it failed, or never ran).
func (r *applyRun) upgrade(ctx context.Context) (installed string, err error) {
	n := r.n
	look := r.talosLook("upgrade --image " + r.image)

	if r.lifecycle {
		report.Progress(n.Name, "upgrading to %s (LifecycleService)", r.version)

		running, err := r.lifecycleUpgrade(ctx)
		if status.Code(err) != codes.Unimplemented {
			if err != nil {
				f := &report.Failure{Node: n.Name, Check: "upgrade", Detail: err.Error(), Look: look}
				if running {
					return fmt.Sprintf("Talos %s (if the installer finishes)", r.version), f
				}

				return "", f
			}

			report.Progress(n.Name, "installed; rebooting into %s", r.version)

			return fmt.Sprintf("Talos %s (installed)", r.version), r.reboot(ctx)
		}

		report.Progress(n.Name, "LifecycleService is not served: the legacy upgrade API then")
	}

	report.Progress(n.Name, "upgrading to %s (legacy MachineService.Upgrade, which reboots on its own)", r.version)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	if _, err := r.c.UpgradeWithOptions(cctx, client.WithUpgradeImage(r.image), client.WithUpgradeRebootMode(machineapi.UpgradeRequest_DEFAULT)); err != nil { //nolint:staticcheck // the Talos 1.12 API
		return "", &report.Failure{Node: n.Name, Check: "upgrade", Detail: talos.Message(err), Look: look}
	}

	return "", nil
}

// installing is Talos 1.13's answer while another Upgrade or Install holds LifecycleService's lock
// (internal/app/lifecycle/lifecycle.go:156-157 at v1.13.0): a stopped run's installer, still running.
const installing = "another installation/upgrade is already in progress"

// lifecycleUpgrade runs the installer through LifecycleService.Upgrade. running says, on a failure, that
// the installer may still run on the machine and finish: Talos runs it on the stream's context only until
// task.Start, then waits for it on a context of its own (internal/app/lifecycle/container.go:165,181 at
// v1.13.0), so a stream that ends without the installer's exit code (our signal or --timeout, the
// connection lost) leaves it running, and an installer that finishes makes the new Talos the next boot's
// (sd-boot's default entry: internal/app/machined/pkg/runtime/v1alpha1/bootloader/sdboot/sdboot.go:399-400). An installer already
// running (a stopped run's) is waited for, then run again: it installs the same image.
func (r *applyRun) lifecycleUpgrade(ctx context.Context) (running bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	waited := false

	for {
		exit, err := r.runInstaller(cctx)
		if err == nil {
			if exit != 0 {
				return false, fmt.Errorf("the installer exited with %d; nothing is staged, the node keeps running %s", exit, r.version)
			}

			return false, nil
		}

		switch st := status.Code(err); {
		case st == codes.Unimplemented:
			return false, err
		case st == codes.FailedPrecondition && strings.Contains(talos.Message(err), installing):
			if !waited {
				report.Progress(r.n.Name, "an installer is already running on the machine (a stopped run's): waiting for it to end, then installing again")

				waited = true
			}

			select {
			case <-cctx.Done():
				return true, fmt.Errorf("stopped while an earlier installer still ran on the machine: %w", context.Cause(cctx))
			case <-time.After(wait.Every):
			}
		case talos.Transient(err) || cctx.Err() != nil:
			why := talos.Message(err)
			if cctx.Err() != nil {
				why = "stopped: " + context.Cause(cctx).Error()
			}

			return true, fmt.Errorf("%s, before the installer's exit code: it may be running on the machine, which runs an installer it started to its end whatever the client does", why)
		default:
			return false, errors.New(talos.Message(err))
		}
	}
}

// runInstaller is one LifecycleService.Upgrade stream: the installer's exit code, or why there is none.
func (r *applyRun) runInstaller(ctx context.Context) (int32, error) {
	stream, err := r.c.LifecycleClient.Upgrade(ctx, &machineapi.LifecycleServiceUpgradeRequest{
		Containerd: talos.SystemContainerd(),
		Source:     &machineapi.InstallArtifactsSource{ImageName: r.image},
	})
	if err != nil {
		return 0, err
	}

	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, status.Error(codes.Unavailable, "the installer's stream ended without an exit code")
		}

		if err != nil {
			return 0, err
		}

		switch p := msg.GetProgress().GetResponse().(type) {
		case *machineapi.LifecycleServiceInstallProgress_Message:
			report.Progress(r.n.Name, "installer: %s", strings.TrimSpace(p.Message))
		case *machineapi.LifecycleServiceInstallProgress_ExitCode:
			return p.ExitCode, nil
		}
	}
}

// reboot asks for a reboot; an answer lost because the node went down at once is no failure
// (the boot ID tells). A call ended by our own stop (a signal, the step's --timeout) is one: Talos
// may never have been asked.
func (r *applyRun) reboot(ctx context.Context) error {
	cctx, cancel := wait.Call(ctx)
	defer cancel()

	err := r.c.Reboot(cctx)
	if err != nil && ctx.Err() != nil {
		return &report.Failure{Node: r.n.Name, Check: "reboot", Detail: fmt.Sprintf("stopped (%s) before Talos answered the reboot: it may never have been asked", context.Cause(ctx)), Look: r.talosLook("reboot")}
	}

	if err != nil && !talos.Transient(err) {
		return &report.Failure{Node: r.n.Name, Check: "reboot", Detail: talos.Message(err), Look: r.talosLook("reboot")}
	}

	return nil
}

// waitReboot waits for a new boot ID (talosctl's BootIDChangedPostCheckFn); a node that comes
// back trusting no client certificate came back in maintenance mode, which no wait fixes.
func (r *applyRun) waitReboot(ctx context.Context, before string) error {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s dmesg; the machine's console", n.IP)
	down := false
	start := time.Now()

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		id, err := talos.BootID(ctx, r.c)
		if err != nil {
			if !down {
				report.Progress(n.Name, "down")

				down = true
			}

			if strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "handshake") {
				if s, _ := r.t.Classify(ctx, r.at); s == talos.Maintenance { //nolint:errcheck
					return wait.Stop(report.Checkf("reboot", fmt.Sprintf("talosctl -n %s get machinestatus --insecure", n.IP), "the node came back in maintenance mode (no config: its disk was wiped or the install failed)"))
				}
			}

			return report.Checkf("reboot", look, "the node did not come back (down for %s; last: %s)", time.Since(start).Round(time.Second), talos.Message(err))
		}

		if id == before {
			return report.Checkf("reboot", look, "the node has not rebooted (boot ID unchanged)")
		}

		return nil
	})
	if err != nil {
		return report.From(n.Name, "reboot", look, err)
	}

	report.Progress(n.Name, "back up (new boot ID) after %s", time.Since(start).Round(100*time.Millisecond))

	return nil
}

// waitRunning waits for MachineStatus running and ready once etcd is bootstrapped (ready in all but its
// Node while no CNI runs: machineReady).
func (r *applyRun) waitRunning(ctx context.Context) error {
	look := r.talosLook("get machinestatus")
	butNode := false

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		ms, err := talos.MachineStatus(ctx, r.c)
		if err != nil {
			return report.Checkf("machine-status", look, "%s", talos.Message(err))
		}

		butNode, err = r.machineReady(ctx, ms)

		return err
	})
	if err != nil {
		return report.From(r.n.Name, "machine-status", look, err)
	}

	if butNode {
		report.Progress(r.n.Name, "running, and ready but for its Node (no CNI yet)")
	} else {
		report.Progress(r.n.Name, "running and ready")
	}

	return nil
}

// checkVersion is what talosctl never does: the node runs the version and schematic it was given.
func (r *applyRun) checkVersion(ctx context.Context) error {
	look := r.talosLook("version; talosctl -n " + r.n.IP + " get extensions")

	running, err := talos.Version(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: talos.Message(err), Look: look}
	}

	sch, err := talos.Schematic(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: talos.Message(err), Look: look}
	}

	if running != r.version {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs Talos %s after the upgrade, not %s (the new image did not boot)", running, r.version), Look: look}
	}

	if sch != r.schema {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs schematic %s after the upgrade, not %s", orNone(sch), orNone(r.schema)), Look: look}
	}

	report.Progress(r.n.Name, "runs Talos %s, schematic %s, as configured", running, orNone(sch))

	return nil
}
