package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// check is a failed step of a wait: which check (on which node, when not the command's own),
// and how a person looks at it.
type check struct {
	name string
	look string
	err  error
	node string
}

func (c *check) Error() string { return c.err.Error() }
func (c *check) Unwrap() error { return c.err }

func checkf(name, look string, format string, args ...any) *check {
	return &check{name: name, look: look, err: fmt.Errorf(format, args...)}
}

// failure turns a wait's error into the command's Failure: the last check still failing.
func failure(node, defaultCheck, defaultLook string, err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}

	name, look := defaultCheck, defaultLook

	var c *check
	if errors.As(err, &c) {
		name, look = c.name, c.look
		if c.node != "" {
			node = c.node
		}
	}

	return &Failure{Node: node, Check: name, Detail: err.Error(), Look: look}
}

// applyRun is one `apply`: a node, the config it must end up with, and what the command may use.
type applyRun struct {
	t        *Talos
	n        Node
	role     string
	secrets  *Secrets
	cfg      coreconfig.Provider
	image    string
	version  string // what machine.install.image makes the node run
	schema   string
	pauses   []Workload
	snapshot string
	noKube   bool

	c            *client.Client
	lifecycle    bool
	bootstrapped bool
	kube         *Kube

	rec     *Record // what this step's last apply found (PULUMI_COMMAND_STDOUT), nil when none
	at      Node    // where the node answers: n, or where the record last reached it
	machine string  // the identity of the machine that answers ("" when it cannot be told)
}

func (r *applyRun) controlPlane() bool { return r.role == "controlplane" }

func (r *applyRun) talosLook(what string) string {
	return fmt.Sprintf("talosctl -n %s %s", r.n.IP, what)
}

func runApply(ctx context.Context, args []string) error {
	f := newFlags("apply")

	var (
		nodes  nodeList
		pauses stringList
	)

	f.Var(&nodes, "node", "NAME=IP of the node")
	role := f.String("role", "", "controlplane or worker")
	timeout := f.timeout()
	snapshot := f.String("etcd-snapshot", "", "save an etcd snapshot here before anything changes (the chain's first control plane)")
	f.Var(&pauses, "pause", "KIND/NAMESPACE/NAME of a Deployment or StatefulSet to scale to 0 around a disruption (repeatable)")
	noKube := f.Bool("no-kubernetes", false, "Talos steps only: no drain, pause, hooks or Kubernetes checks")

	if err := f.parse(args); err != nil {
		return err
	}

	if err := requireTimeout(*timeout); err != nil {
		return err
	}

	n, err := requireOne(nodes, "--node")
	if err != nil {
		return err
	}

	if *role != "controlplane" && *role != "worker" {
		return usagef("--role must be controlplane or worker")
	}

	r := &applyRun{n: n, role: *role, snapshot: *snapshot, noKube: *noKube}

	for _, p := range pauses {
		w, err := parseWorkload(p)
		if err != nil {
			return usagef("%s", err)
		}

		r.pauses = append(r.pauses, w)
	}

	if r.secrets, err = readSecrets(os.Stdin); err != nil {
		return err
	}

	if err := r.secrets.require("talosconfig", "machineConfig"); err != nil {
		return err
	}

	if r.t, err = newTalos(r.secrets); err != nil {
		return err
	}

	if r.cfg, err = loadConfig(r.secrets.MachineConfig); err != nil {
		return usagef("stdin: machineConfig is not a Talos machine config: %s", firstLine(err))
	}

	if r.cfg.Machine() == nil {
		return usagef("stdin: machineConfig has no v1alpha1 machine section")
	}

	isCP := r.cfg.Machine().Type() == machine.TypeControlPlane || r.cfg.Machine().Type() == machine.TypeInit
	if isCP != r.controlPlane() {
		return usagef("--role %s, but the machine config is for a %s", r.role, r.cfg.Machine().Type())
	}

	r.image = r.cfg.Machine().Install().Image()
	if r.version, r.schema = parseInstaller(r.image); r.version == "" {
		return usagef("the machine config's machine.install.image %q has no version tag", r.image)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	r.rec = lastRecord(n)

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
		return err
	}

	rec := Record{Node: r.n.Name, IP: r.at.IP, Machine: r.machine}

	if r.c != nil && r.controlPlane() && r.bootstrapped {
		if id := r.memberID(ctx); id != 0 {
			rec.EtcdMember = fmt.Sprintf("%016x", id)
		}
	}

	return printRecord(rec)
}

// memberID is the node's own etcd member ID (0 when it cannot be read).
func (r *applyRun) memberID(ctx context.Context) uint64 {
	if st, err := etcdStatus(ctx, r.c); err == nil && st.GetMemberId() != 0 {
		return st.GetMemberId()
	}

	members, err := etcdMembers(ctx, r.c)
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
	n := r.n

	state, err := r.reach(ctx)
	if err != nil {
		return err
	}

	if state == stateMaintenance {
		if err := r.clearReflashed(ctx); err != nil {
			return err
		}

		return r.handOver(ctx)
	}

	if r.c, err = r.t.connect(ctx, r.at); err != nil {
		return err
	}

	running, err := version(ctx, r.c)
	if err != nil {
		return failure(n.Name, "version", r.talosLook("version"), err)
	}

	r.lifecycle = lifecycleAPI(running)

	runningSchematic, err := schematic(ctx, r.c)
	if err != nil {
		return failure(n.Name, "schematic", r.talosLook("get extensions"), err)
	}

	active, persistent, err := machineConfigs(ctx, r.c)
	if err != nil {
		return failure(n.Name, "config", r.talosLook("get machineconfig"), err)
	}

	same, err := sameConfig(active, r.cfg)
	if err != nil {
		return err
	}

	// A config staged by an earlier run that never rebooted: only the reboot is missing.
	staged := false
	if !same {
		if samePersistent, err := sameConfig(persistent, r.cfg); err == nil && samePersistent {
			staged = true
		}
	}

	upgrade := running != r.version || runningSchematic != r.schema

	progress(n.Name, "runs Talos %s (schematic %s); the config installs %s (schematic %s)", running, orNone(runningSchematic), r.version, orNone(r.schema))

	r.bootstrapped = r.clusterBootstrapped(ctx)
	if !r.bootstrapped {
		progress(n.Name, "etcd is not bootstrapped yet: Talos steps only (no etcd, drain or Kubernetes checks until the bootstrap)")
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
		progress(n.Name, "config unchanged and Talos as configured: checking health only")

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
		progress(n.Name, "the config was staged by an earlier run: it needs the reboot still")
	case !same:
		if reboot, err = r.dryRun(ctx); err != nil {
			return err
		}
	}

	// A reboot or an upgrade is coming: refuse now, before the config changes, if it would cost quorum.
	if (reboot || upgrade) && r.controlPlane() && r.bootstrapped {
		if err := r.etcdPreflight(ctx, true); err != nil {
			return err
		}
	}

	if !same && !reboot {
		if err := r.applyNow(ctx, active); err != nil {
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
		old          *Node
		state        string
		said, warned bool
	)

	if r.rec.moved(n) {
		o := r.rec.at(n)
		old = &o
	}

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		s, err := r.t.classify(ctx, n)
		if s != stateUnreachable {
			r.at, state = n, s

			return r.checkMachine(ctx, s)
		}

		if old != nil {
			if so, _ := r.t.classify(ctx, *old); so != stateUnreachable { //nolint:errcheck
				id := r.identify(ctx, *old, so)

				if so == stateRunning && r.rec.Machine != "" && id != "" && id != r.rec.Machine {
					if !warned {
						progress(n.Name, "another machine (%s) answers at %s, where this node was last reached: not this one", id, old.IP)

						warned = true
					}
				} else {
					r.at, state, r.machine = *old, so, id

					return nil
				}
			}
		}

		if !said {
			progress(n.Name, "waiting for the node to answer (booting or installing?)")

			said = true
		}

		return checkf("reach", look, "the node does not answer: %s", grpcMessage(err))
	})
	if err != nil {
		return "", failure(n.Name, "reach", "", err)
	}

	if r.moving() {
		progress(n.Name, "does not answer at %s, but at %s, where it was last reached (%s): the new config goes there, and moves it", n.IP, r.at.IP, state)
	} else {
		progress(n.Name, "answers: %s", state)
	}

	return state, nil
}

// moving: the node answers at its old address, and the config moves it to its new one.
func (r *applyRun) moving() bool { return r.at.IP != r.n.IP }

// identify reads which machine answers at an address ("" when it cannot be told, and says why).
func (r *applyRun) identify(ctx context.Context, at Node, state string) string {
	connect := func(ctx context.Context, n Node) (*client.Client, error) { return r.t.connect(ctx, n) }
	if state == stateMaintenance {
		connect = connectInsecure
	}

	c, err := connect(ctx, at)
	if err != nil {
		return ""
	}

	defer c.Close() //nolint:errcheck

	id, err := machineIdentity(ctx, c, at.IP)
	if err != nil {
		progress(r.n.Name, "which machine it is cannot be read: %s", grpcMessage(err))
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
	if state != stateRunning || rec == nil || rec.Machine == "" || r.machine == "" || r.machine == rec.Machine {
		return nil
	}

	named := configMAC(r.cfg, r.n.IP)
	if named == rec.Machine {
		ip := r.at.IP

		return &permanent{&Failure{
			Node:  r.n.Name,
			Check: "machine",
			Detail: fmt.Sprintf("another machine answers at %s: it is %s, but %s was %s when last reached, and the config still names %s: another machine took the address, so nothing was changed",
				ip, r.machine, r.n.Name, rec.Machine, named),
			Look: fmt.Sprintf("talosctl -n %s get links; talosctl -n %s get hostname; the DHCP leases for %s", ip, ip, ip),
		}}
	}

	if named == "" {
		progress(r.n.Name, "another machine answers than when last reached (%s, was %s), and the config names no MAC to tell which is meant: carrying on", r.machine, rec.Machine)
	} else {
		progress(r.n.Name, "another machine answers than when last reached (%s, was %s): the inventory names %s now, a replaced machine", r.machine, rec.Machine, named)
	}

	return nil
}

// follow waits (within --timeout) for the node at the address its new config gives it, and talks
// to it there from then on.
func (r *applyRun) follow(ctx context.Context) error {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s version; talosctl -n %s get addresses; the machine's console", n.IP, r.at.IP)

	progress(n.Name, "waiting for it at %s, where the new config puts it", n.IP)

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		s, err := r.t.classify(ctx, n)

		switch s {
		case stateRunning:
			return nil
		case stateMaintenance:
			return &permanent{checkf("move", look, "a machine in maintenance mode answers at %s", n.IP)}
		}

		return checkf("move", look, "it does not answer at %s: %s", n.IP, grpcMessage(err))
	})
	if err != nil {
		return failure(n.Name, "move", look, err)
	}

	if id := identityAt(ctx, r.t, n); r.machine != "" && id != "" && id != r.machine {
		return &Failure{Node: n.Name, Check: "machine", Detail: fmt.Sprintf("another machine (%s) answers at %s than the one the config went to (%s)", id, n.IP, r.machine), Look: look}
	}

	c, err := r.t.connect(ctx, n)
	if err != nil {
		return err
	}

	r.c.Close() //nolint:errcheck
	r.c, r.at = c, n

	progress(n.Name, "answers at %s, where the new config put it", n.IP)

	return nil
}

// otherCPWait bounds the search for another control plane to remove a reflashed one's member through.
const otherCPWait = 2 * time.Minute

// clearReflashed: a machine in maintenance mode whose last apply recorded an etcd member was
// reflashed or replaced. Before it gets its config, its stale member is removed through another
// control plane and its old Node object deleted, so it joins etcd and Kubernetes afresh.
func (r *applyRun) clearReflashed(ctx context.Context) error {
	n := r.n

	id := r.rec.memberID()
	if id == 0 {
		return nil
	}

	progress(n.Name, "in maintenance mode, but it was etcd member %016x when last reached: reflashed or replaced, so that member and its old Node go before the hand-over", id)

	others := r.t.otherControlPlanes(n, r.at.IP, r.rec.IP)
	if len(others) == 0 {
		progress(n.Name, "no other control plane in the talosconfig: its etcd went with its disk, nothing to remove")

		return nil
	}

	cp, c, seen := r.t.firstAnswering(ctx, others, min(otherCPWait, remaining(ctx)))
	if c == nil && ctx.Err() != nil { // the command's own timeout, or a signal: nothing is handed over
		return &Failure{Node: n.Name, Check: "etcd", Detail: "no other control plane answered before: " + ctx.Err().Error(), Look: etcdLook(others[0])}
	}

	if c == nil {
		progress(n.Name, "no other control plane answers (%s): the stale member cannot be removed now (Talos removes a member of the node's name itself when it joins, once etcd has a leader)", seen)

		return nil
	}

	defer c.Close() //nolint:errcheck

	if err := removeStaleMember(ctx, c, n.Name, id, cp); err != nil {
		return &Failure{Node: n.Name, Check: "etcd", Detail: "the stale etcd member cannot be removed, so the config was not handed over: " + err.Error(), Look: etcdLook(cp)}
	}

	if r.noKube {
		progress(n.Name, "--no-kubernetes: its old Node object is left")

		return nil
	}

	k, err := kubeFrom(ctx, r.secrets, c)
	if err != nil {
		return &Failure{Node: n.Name, Check: "kubeconfig", Detail: err.Error(), Look: "talosctl -n " + cp.IP + " kubeconfig"}
	}

	if err := deleteNode(ctx, k, n.Name); err != nil {
		return &Failure{Node: n.Name, Check: "node", Detail: "its old Node object cannot be deleted, so the config was not handed over: " + firstLine(err), Look: nodeLook(n.Name)}
	}

	return nil
}

// handOver gives a node in maintenance mode its config: Talos installs it and reboots on its own,
// so a fresh bring-up is not serialized node by node.
func (r *applyRun) handOver(ctx context.Context) error {
	look := fmt.Sprintf("talosctl -n %s apply-config --insecure --dry-run --file CONFIG; talosctl -n %s get machinestatus --insecure", r.at.IP, r.at.IP)

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		c, err := connectInsecure(ctx, r.at)
		if err != nil {
			return err
		}

		defer c.Close() //nolint:errcheck

		cctx, cancel := callCtx(ctx)
		defer cancel()

		_, err = c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_AUTO})

		switch {
		case err == nil:
			return nil
		case transient(err):
			return checkf("apply", look, "the node does not take the config yet: %s", grpcMessage(err))
		default:
			return &permanent{checkf("apply", look, "Talos refused the config: %s", grpcMessage(err))}
		}
	})
	if err != nil {
		return failure(r.n.Name, "apply", look, err)
	}

	progress(r.n.Name, "was in maintenance mode: config handed over; Talos installs %s and reboots on its own", r.version)

	return nil
}

// clusterBootstrapped: a control plane answers etcd's member list, or etcd is past waiting for
// a bootstrap (a cluster that lost quorum is bootstrapped, and must fail the etcd checks).
func (r *applyRun) clusterBootstrapped(ctx context.Context) bool {
	c := r.c

	if !r.controlPlane() {
		ec, err := r.t.connectEndpoints(ctx)
		if err != nil {
			return true
		}

		defer ec.Close() //nolint:errcheck

		c = ec
	}

	probeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	if _, err := etcdMembers(probeCtx, c); err == nil {
		return true
	}

	// etcd waits in "Preparing" until it is bootstrapped or joins; any other state means it ran.
	services, err := c.ServiceList(probeCtx)
	if err != nil {
		return true
	}

	for _, m := range services.GetMessages() {
		for _, s := range m.GetServices() {
			if s.GetId() == "etcd" {
				return s.GetState() != "Preparing"
			}
		}
	}

	return true
}

// connectKube is the kubeconfig from stdin, else the admin kubeconfig a control plane hands out
// (as `talosctl kubeconfig` fetches it).
func (r *applyRun) connectKube(ctx context.Context) error {
	text := r.secrets.Kubeconfig
	if text == "" {
		var err error
		if text, err = r.t.fetchKubeconfig(ctx, r.at, r.controlPlane()); err != nil {
			return failure(r.n.Name, "kubeconfig", "talosctl kubeconfig --nodes CONTROL_PLANE_IP", err)
		}
	}

	k, err := newKube(text, "")
	if err != nil {
		return &Failure{Node: r.n.Name, Check: "kubeconfig", Detail: err.Error(), Look: "kubectl config view"}
	}

	r.kube = k

	return nil
}

// fetchKubeconfig asks the talosconfig's endpoints (control planes), then the node itself if it is one.
func (t *Talos) fetchKubeconfig(ctx context.Context, n Node, controlPlane bool) (string, error) {
	var (
		errs []error
		text string
	)

	try := func(c *client.Client) bool {
		cctx, cancel := callCtx(ctx)
		defer cancel()

		raw, err := c.Kubeconfig(cctx)
		if err != nil {
			errs = append(errs, err)

			return false
		}

		text = string(raw)

		return true
	}

	if c, err := t.connectEndpoints(ctx); err == nil {
		ok := try(c)
		c.Close() //nolint:errcheck

		if ok {
			return text, nil
		}
	}

	if controlPlane {
		if c, err := t.connect(ctx, n); err == nil {
			ok := try(c)
			c.Close() //nolint:errcheck

			if ok {
				return text, nil
			}
		}
	}

	return "", fmt.Errorf("no kubeconfig on stdin, and the Talos API hands none out: %w", errors.Join(errs...))
}

// dryRun asks the node what the config change needs (Talos's CanApplyImmediate): true when a reboot.
func (r *applyRun) dryRun(ctx context.Context) (bool, error) {
	look := r.talosLook("apply-config --dry-run --file CONFIG")

	cctx, cancel := callCtx(ctx)
	defer cancel()

	resp, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_AUTO, DryRun: true})
	if err != nil {
		return false, &Failure{Node: r.n.Name, Check: "dry-run", Detail: "Talos refused the config: " + grpcMessage(err), Look: look}
	}

	if len(resp.GetMessages()) == 0 {
		return false, &Failure{Node: r.n.Name, Check: "dry-run", Detail: "no answer", Look: look}
	}

	reboot := resp.GetMessages()[0].GetMode() == machineapi.ApplyConfigurationRequest_REBOOT
	if reboot {
		progress(r.n.Name, "config changed: Talos needs a reboot to apply it")
	} else {
		progress(r.n.Name, "config changed: Talos applies it without a reboot")
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

			ci := criContainerd()
			if component == "kubelet" || component == "etcd" {
				ci = systemContainerd() // Talos runs these itself, from its system namespace
			}

			progress(r.n.Name, "pulling %s", image)

			if err := pullTo(ctx, r.c, r.lifecycle, ci, image); err != nil {
				return &Failure{Node: r.n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", image, grpcMessage(err)), Look: r.talosLook("image pull " + image)}
			}
		}
	}

	cctx, cancel := callCtx(ctx)
	defer cancel()

	if _, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
		return &Failure{Node: r.n.Name, Check: "apply", Detail: "Talos refused the config: " + grpcMessage(err), Look: look}
	}

	progress(r.n.Name, "config applied without a reboot")

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

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		err := r.healthOnce(ctx, images)
		if err != nil {
			var c *check
			if errors.As(err, &c) && c.name != said {
				progress(r.n.Name, "waiting: %s: %s", c.name, c.err)

				said = c.name
			}
		}

		return err
	})
	if err != nil {
		return failure(r.n.Name, "health", r.talosLook("get machinestatus"), err)
	}

	progress(r.n.Name, "healthy")

	return nil
}

func (r *applyRun) healthOnce(ctx context.Context, images map[string]string) error {
	ms, err := getMachineStatus(ctx, r.c)
	if err != nil {
		return checkf("machine-status", r.talosLook("get machinestatus"), "%s", grpcMessage(err))
	}

	// Before the bootstrap Talos cannot be ready (its readiness waits for etcd and the Node).
	if ms.stage != "running" || (r.bootstrapped && !ms.ready) {
		return checkf("machine-status", r.talosLook("get machinestatus"), "%s", ms)
	}

	if !r.bootstrapped {
		return nil
	}

	if r.controlPlane() {
		members, err := r.t.etcdReport(ctx, r.n, r.c)
		if err != nil {
			return checkf("etcd", etcdLook(r.n), "%s", err)
		}

		found := false
		for _, m := range members {
			found = found || m.GetHostname() == r.n.Name
		}

		if !found {
			return checkf("etcd", etcdLook(r.n), "%s is not an etcd member (members: %s)", r.n.Name, strings.Join(memberNames(members), ", "))
		}
	}

	if r.kube == nil {
		return nil
	}

	if err := r.kube.nodeReady(ctx, r.n.Name); err != nil {
		return checkf("node-ready", nodeLook(r.n.Name), "%s", firstLine(err))
	}

	if want := tagOf(images["kubelet"]); want != "" {
		got, err := r.kube.kubeletVersion(ctx, r.n.Name)
		if err != nil {
			return checkf("kubelet", nodeLook(r.n.Name), "%s", firstLine(err))
		}

		if got != want {
			return checkf("kubelet", nodeLook(r.n.Name), "the kubelet reports %s, the config names %s", got, want)
		}
	}

	if r.controlPlane() {
		if err := r.kube.staticPods(ctx, r.n.Name, images); err != nil {
			return checkf("control-plane-pods", fmt.Sprintf("kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=%s", r.n.Name), "%s", firstLine(err))
		}
	}

	return nil
}

// tagOf is an image's tag (the kubelet's version in Talos's kubelet image).
func tagOf(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}

	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}

	return ""
}

// resumeLeftovers uncordons the Node and restores the workloads an earlier, interrupted run left
// cordoned and paused (it failed, or was stopped, after the reboot).
func (r *applyRun) resumeLeftovers(ctx context.Context) error {
	if r.kube == nil {
		return nil
	}

	left, err := r.kube.leftCordoned(ctx, r.n.Name)
	if err != nil {
		return &Failure{Node: r.n.Name, Check: "uncordon", Detail: firstLine(err), Look: nodeLook(r.n.Name)}
	}

	if left {
		if err := r.kube.cordon(ctx, r.n.Name, false); err != nil {
			return &Failure{Node: r.n.Name, Check: "uncordon", Detail: firstLine(err), Look: nodeLook(r.n.Name)}
		}

		progress(r.n.Name, "uncordoned (an earlier run left it cordoned)")
	}

	for _, w := range r.pauses {
		if err := r.kube.resume(ctx, r.n.Name, w); err != nil {
			return &Failure{Node: r.n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, firstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
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
		progress(n.Name, "pulling the installer %s", r.image)

		if err := pullImage(ctx, r.c, r.lifecycle, r.image); err != nil {
			return &Failure{Node: n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", r.image, grpcMessage(err)), Look: r.talosLook("image pull --namespace system " + r.image)}
		}
	}

	// From here on a failure before the reboot puts Kubernetes back as it was.
	prepared, err := r.prepareKube(ctx)
	if err != nil {
		r.unprepareKube(prepared)

		return err
	}

	if stage {
		cctx, cancel := callCtx(ctx)
		_, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_STAGED})

		cancel()

		if err != nil {
			r.unprepareKube(prepared)

			return &Failure{Node: n.Name, Check: "apply", Detail: "Talos refused the config: " + grpcMessage(err), Look: r.talosLook("apply-config --mode staged --dry-run --file CONFIG")}
		}

		progress(n.Name, "config staged for the next boot")
	}

	before, err := bootID(ctx, r.c)
	if err != nil {
		r.unprepareKube(prepared)

		return &Failure{Node: n.Name, Check: "boot-id", Detail: grpcMessage(err), Look: r.talosLook("read /proc/sys/kernel/random/boot_id")}
	}

	if upgrade {
		if err := r.upgrade(ctx); err != nil {
			r.unprepareKube(prepared)

			return err
		}
	} else {
		progress(n.Name, "rebooting")

		if err := r.reboot(ctx); err != nil {
			r.unprepareKube(prepared)

			return err
		}
	}

	// The node is going down: a failure from here on leaves it cordoned, for a person to look at.
	if r.moving() {
		if err := r.follow(ctx); err != nil {
			return withLeftovers(err, prepared)
		}
	}

	if err := r.waitReboot(ctx, before); err != nil {
		return withLeftovers(err, prepared)
	}

	if err := r.waitRunning(ctx); err != nil {
		return withLeftovers(err, prepared)
	}

	if upgrade {
		if err := r.checkVersion(ctx); err != nil {
			return withLeftovers(err, prepared)
		}
	}

	if stage {
		active, _, err := machineConfigs(ctx, r.c)
		if err == nil {
			var same bool
			if same, err = sameConfig(active, r.cfg); err == nil && !same {
				err = errors.New("the staged config is not the active one after the reboot")
			}
		}

		if err != nil {
			return withLeftovers(&Failure{Node: n.Name, Check: "config", Detail: err.Error(), Look: r.talosLook("get machineconfig -o yaml")}, prepared)
		}
	}

	if r.kube != nil {
		if err := poll(ctx, pollEvery, func(ctx context.Context) error {
			if err := r.kube.nodeReady(ctx, n.Name); err != nil {
				return checkf("node-ready", nodeLook(n.Name), "%s", firstLine(err))
			}

			return nil
		}); err != nil {
			return withLeftovers(failure(n.Name, "node-ready", nodeLook(n.Name), err), prepared)
		}
	}

	if err := r.unprepareKubeChecked(ctx, prepared); err != nil {
		return err
	}

	return r.healthy(ctx)
}

// prepared is what prepareKube did, so it can be undone.
type prepared struct {
	hooks    bool
	paused   []Workload
	cordoned bool
}

func (r *applyRun) prepareKube(ctx context.Context) (prepared, error) {
	var p prepared

	if r.kube == nil {
		return p, nil
	}

	n := r.n

	for _, raw := range r.secrets.Hooks.Before {
		p.hooks = true

		if err := r.kube.runJob(ctx, n.Name, raw); err != nil {
			return p, failure(n.Name, "hook", "kubectl get jobs -A; kubectl logs job/NAME -n NAMESPACE", wrapCheck("hook", "kubectl get jobs -A", err))
		}
	}

	for _, w := range r.pauses {
		p.paused = append(p.paused, w)

		if err := r.kube.pause(ctx, n.Name, w); err != nil {
			return p, failure(n.Name, "pause", fmt.Sprintf("kubectl -n %s get %s %s", w.Namespace, strings.ToLower(w.Kind), w.Name), err)
		}
	}

	progress(n.Name, "cordon")

	p.cordoned = true

	if err := r.kube.cordon(ctx, n.Name, true); err != nil {
		return p, &Failure{Node: n.Name, Check: "cordon", Detail: firstLine(err), Look: nodeLook(n.Name)}
	}

	progress(n.Name, "drain")

	if err := r.kube.drain(ctx, n.Name, remaining(ctx)); err != nil {
		look := fmt.Sprintf("kubectl get pods -A -o wide --field-selector spec.nodeName=%s; kubectl get pdb -A", n.Name)

		return p, &Failure{Node: n.Name, Check: "drain", Detail: firstLine(err), Look: look}
	}

	return p, nil
}

func wrapCheck(name, look string, err error) error {
	var c *check
	if errors.As(err, &c) {
		return err
	}

	return &check{name: name, look: look, err: err}
}

// unprepareKube undoes prepareKube after a failure before the reboot (best effort: the failure
// being reported matters more).
func (r *applyRun) unprepareKube(p prepared) {
	if r.kube == nil {
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := r.undo(ctx, p); err != nil {
		progress(r.n.Name, "could not undo: %s", err)
	}
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
		if err := r.kube.cordon(ctx, n.Name, false); err != nil {
			return &Failure{Node: n.Name, Check: "uncordon", Detail: firstLine(err), Look: nodeLook(n.Name)}
		}

		progress(n.Name, "uncordoned")
	}

	if p.hooks {
		for _, raw := range r.secrets.Hooks.After {
			if err := r.kube.runJob(ctx, n.Name, raw); err != nil {
				return failure(n.Name, "hook", "kubectl get jobs -A", wrapCheck("hook", "kubectl get jobs -A", err))
			}
		}
	}

	for _, w := range p.paused {
		if err := r.kube.resume(ctx, n.Name, w); err != nil {
			return &Failure{Node: n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, firstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
		}
	}

	return nil
}

// withLeftovers says what a failure after the reboot leaves behind for a person.
func withLeftovers(err error, p prepared) error {
	var f *Failure
	if !errors.As(err, &f) {
		return err
	}

	var left []string
	if p.cordoned {
		left = append(left, "the Node is left cordoned")
	}

	for _, w := range p.paused {
		left = append(left, fmt.Sprintf("%s is left scaled to 0 (replicas in its %s annotation)", w, pausedAnnotation))
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
		progress(n.Name, "no etcd snapshot: %s", map[bool]string{true: "etcd is not bootstrapped yet", false: "not a control plane"}[r.controlPlane()])

		return nil
	}

	if err := saveSnapshot(ctx, r.c, r.snapshot); err != nil {
		return &Failure{Node: n.Name, Check: "etcd-snapshot", Detail: grpcMessage(err), Look: r.talosLook("etcd snapshot " + r.snapshot)}
	}

	progress(n.Name, "etcd snapshot saved to %s", r.snapshot)

	return nil
}

// etcdPreflight refuses to change a control plane unless etcd is healthy and, before taking it
// down, keeps its quorum without this member.
func (r *applyRun) etcdPreflight(ctx context.Context, down bool) error {
	n := r.n

	members, err := r.t.etcdReport(ctx, n, r.c)
	if err != nil {
		return &Failure{Node: n.Name, Check: "etcd", Detail: "etcd is not healthy, so this control plane is left untouched: " + err.Error(), Look: etcdLook(n)}
	}

	if !down {
		progress(n.Name, "etcd healthy: %d members (%s)", len(members), strings.Join(memberNames(members), ", "))

		return nil
	}

	// A single member cannot keep quorum through anything: a one-control-plane cluster accepts
	// that its API pauses (Talos allows it too); two members lose quorum with either one down.
	switch len(members) {
	case 2:
		return &Failure{Node: n.Name, Check: "etcd", Detail: "etcd has 2 members: taking one down loses quorum (add a third control plane, or remove one)", Look: etcdLook(n)}
	case 1:
		progress(n.Name, "etcd has a single member: the Kubernetes API pauses while this node is down")
	default:
		progress(n.Name, "etcd healthy: %d members (%s), quorum kept without this one", len(members), strings.Join(memberNames(members), ", "))
	}

	return nil
}

// upgrade installs the new Talos: LifecycleService on Talos 1.13+ (install only, then our reboot),
// the legacy MachineService.Upgrade before (which reboots by itself).
func (r *applyRun) upgrade(ctx context.Context) error {
	n := r.n
	look := r.talosLook("upgrade --image " + r.image)

	if r.lifecycle {
		progress(n.Name, "upgrading to %s (LifecycleService)", r.version)

		err := r.lifecycleUpgrade(ctx)
		if status.Code(err) != codes.Unimplemented {
			if err != nil {
				return &Failure{Node: n.Name, Check: "upgrade", Detail: err.Error(), Look: look}
			}

			progress(n.Name, "installed; rebooting into %s", r.version)

			return r.reboot(ctx)
		}

		progress(n.Name, "LifecycleService is not served: the legacy upgrade API then")
	}

	progress(n.Name, "upgrading to %s (legacy MachineService.Upgrade, which reboots on its own)", r.version)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	if _, err := r.c.UpgradeWithOptions(cctx, client.WithUpgradeImage(r.image), client.WithUpgradeRebootMode(machineapi.UpgradeRequest_DEFAULT)); err != nil { //nolint:staticcheck // the Talos 1.12 API
		return &Failure{Node: n.Name, Check: "upgrade", Detail: grpcMessage(err), Look: look}
	}

	return nil
}

func (r *applyRun) lifecycleUpgrade(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	stream, err := r.c.LifecycleClient.Upgrade(cctx, &machineapi.LifecycleServiceUpgradeRequest{
		Containerd: systemContainerd(),
		Source:     &machineapi.InstallArtifactsSource{ImageName: r.image},
	})
	if err != nil {
		return err
	}

	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the installer ended without an exit code")
		}

		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				return err
			}

			return errors.New(grpcMessage(err))
		}

		switch p := msg.GetProgress().GetResponse().(type) {
		case *machineapi.LifecycleServiceInstallProgress_Message:
			progress(r.n.Name, "installer: %s", strings.TrimSpace(p.Message))
		case *machineapi.LifecycleServiceInstallProgress_ExitCode:
			if p.ExitCode != 0 {
				return fmt.Errorf("the installer exited with %d; nothing is staged, the node keeps running %s", p.ExitCode, r.version)
			}

			return nil
		}
	}
}

// reboot asks for a reboot; an answer lost because the node went down at once is no failure
// (the boot ID tells).
func (r *applyRun) reboot(ctx context.Context) error {
	cctx, cancel := callCtx(ctx)
	defer cancel()

	if err := r.c.Reboot(cctx); err != nil && !transient(err) {
		return &Failure{Node: r.n.Name, Check: "reboot", Detail: grpcMessage(err), Look: r.talosLook("reboot")}
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

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		id, err := bootID(ctx, r.c)
		if err != nil {
			if !down {
				progress(n.Name, "down")

				down = true
			}

			if strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "handshake") {
				if s, _ := r.t.classify(ctx, r.at); s == stateMaintenance { //nolint:errcheck
					return &permanent{checkf("reboot", fmt.Sprintf("talosctl -n %s get machinestatus --insecure", n.IP), "the node came back in maintenance mode (no config: its disk was wiped or the install failed)")}
				}
			}

			return checkf("reboot", look, "the node did not come back (down for %s; last: %s)", time.Since(start).Round(time.Second), grpcMessage(err))
		}

		if id == before {
			return checkf("reboot", look, "the node has not rebooted (boot ID unchanged)")
		}

		return nil
	})
	if err != nil {
		return failure(n.Name, "reboot", look, err)
	}

	progress(n.Name, "back up (new boot ID) after %s", time.Since(start).Round(100*time.Millisecond))

	return nil
}

// waitRunning waits for MachineStatus running (and ready, once etcd is bootstrapped).
func (r *applyRun) waitRunning(ctx context.Context) error {
	look := r.talosLook("get machinestatus")

	err := poll(ctx, pollEvery, func(ctx context.Context) error {
		ms, err := getMachineStatus(ctx, r.c)
		if err != nil {
			return checkf("machine-status", look, "%s", grpcMessage(err))
		}

		if ms.stage != "running" || (r.bootstrapped && !ms.ready) {
			return checkf("machine-status", look, "%s", ms)
		}

		return nil
	})
	if err != nil {
		return failure(r.n.Name, "machine-status", look, err)
	}

	progress(r.n.Name, "running and ready")

	return nil
}

// checkVersion is what talosctl never does: the node runs the version and schematic it was given.
func (r *applyRun) checkVersion(ctx context.Context) error {
	look := r.talosLook("version; talosctl -n " + r.n.IP + " get extensions")

	running, err := version(ctx, r.c)
	if err != nil {
		return &Failure{Node: r.n.Name, Check: "version", Detail: grpcMessage(err), Look: look}
	}

	sch, err := schematic(ctx, r.c)
	if err != nil {
		return &Failure{Node: r.n.Name, Check: "version", Detail: grpcMessage(err), Look: look}
	}

	if running != r.version {
		return &Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs Talos %s after the upgrade, not %s (the new image did not boot)", running, r.version), Look: look}
	}

	if sch != r.schema {
		return &Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs schematic %s after the upgrade, not %s", orNone(sch), orNone(r.schema)), Look: look}
	}

	progress(r.n.Name, "runs Talos %s, schematic %s, as configured", running, orNone(sch))

	return nil
}
