// Package apply is the per-node step: hand a node its config and roll what it changes (a reboot,
// a Talos upgrade) behind etcd, drain and health checks, leaving the node healthy.
package apply

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"

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
	// hop: a roll of a path across Talos minors (--installer, path.go): this Talos installed, the config left as it is.
	hop bool

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

	rec *record.Record // what this step's last apply found (PULUMI_COMMAND_STDOUT), nil when none
	// running: the Talos the node ran when the step began; before: its active config then (nil on a hop), which
	// tells the files a reboot must write (files.go).
	running string
	before  coreconfig.Provider
	at      input.Node // where the node answers: n, or where the record last reached it
	machine string     // the identity of the machine that answers ("" when it cannot be told)

	// etcdBefore: the etcd this control plane's member ran at the etcd check before it went down; etcdNow and etcdSeen:
	// its own and every member's ("valinor-1 3.7.1, ...") at the last health check. A change that moved its etcd (a Talos
	// upgrade) is said with every member's, so a roll that moves etcd's minor shows the members moving one at a time.
	etcdBefore, etcdNow, etcdSeen string
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
	installer := f.String("installer", "", "a path's roll: upgrade the node to this installer's Talos, its config left as it is (path.go)")
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

	r := &applyRun{n: n, role: *role, snapshot: *snapshot, noKube: *noKube, stable: *stable, hop: *installer != ""}
	if r.hop {
		if r.version, r.schema = talos.ParseInstaller(*installer); r.version == "" {
			return nil, input.Usagef("--installer %q has no version tag", *installer)
		}

		r.image = *installer
	}

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

	if !r.hop {
		r.image = r.cfg.Machine().Install().Image()
		if r.version, r.schema = talos.ParseInstaller(r.image); r.version == "" {
			return input.Usagef("the machine config's machine.install.image %q has no version tag", r.image)
		}
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

func (r *applyRun) steps(ctx context.Context) error {
	state, err := r.reach(ctx)
	if err != nil {
		return err
	}

	if state == talos.Maintenance && r.hop {
		report.Progress(r.n.Name, "in maintenance mode: its own step, after the path, hands it its config and it installs %s from there", "the stack's Talos")

		return nil
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

	var active coreconfig.Provider

	same, staged := true, false
	if !r.hop {
		if active, same, staged, err = r.readConfigs(ctx); err != nil {
			return err
		}
	}

	r.running, r.before = running, active

	upgrade := running != r.version || runningSchematic != r.schema
	if r.hop {
		upgrade = r.hopNeeded(running)
	}

	if upgrade {
		if err := r.checkPath(running); err != nil {
			return err
		}
	}

	report.Progress(n.Name, "runs Talos %s (schematic %s); the config installs %s (schematic %s)", running, orNone(runningSchematic), r.version, orNone(r.schema))

	r.bootstrapped = r.clusterBootstrapped(ctx)
	if !r.bootstrapped {
		report.Progress(n.Name, "etcd is not bootstrapped yet: Talos steps only (no etcd, drain or Kubernetes checks until the bootstrap)")
	}

	if !r.noKube && r.bootstrapped {
		if err := r.connectKube(ctx); err != nil {
			return err
		}

		// Before the snapshot, the dry run and any change: a config that moves the cluster's networks is refused.
		if !same && !r.hop {
			if err := r.checkNetworks(ctx, wait.Every, active); err != nil {
				return err
			}
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

		// A run killed between its reboot and its read-back, or one whose read-back failed, left the files unchecked:
		// every one is read again here, before the node is handed back (the config is the same, so which of them the
		// last boot had to write cannot be told).
		if !r.hop {
			if err := r.checkFiles(ctx, nil, running); err != nil {
				return err
			}
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
		if reboot, err = r.dryRun(ctx, running, active); err != nil {
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
