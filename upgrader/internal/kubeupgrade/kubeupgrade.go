// Package kubeupgrade is kubernetes-upgrade: a new Kubernetes version rolled component by
// component, as `talosctl upgrade-k8s` rolls it on Talos-managed control planes
// (pkg/cluster/kubernetes/talos_managed.go at v1.13.0): every control plane's API server first, one
// node at a time, then the controller-managers, then the schedulers, then every kubelet (control
// planes, then workers), each change waited for in the new state before the next. Before anything
// changes, it refuses a flag, feature gate or admission plugin the target removed.
//
// Each change is the node's running config with one image replaced (talos_managed.go:318 through
// patch.go:21-55, patchNodeConfig), applied without a reboot. The target images are the new machine
// configs' (stdin), the ones the per-node apply steps after this one hand out: those steps then find
// the Kubernetes part done, and a user's image override (a registry mirror) is kept.
package kubeupgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/staticpods"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Kubelet is the kubelet's name among the components.
const Kubelet = "kubelet"

// Proxy is kube-proxy: its image is in every control plane's config (talos_managed.go:153, 230-264),
// though Iluvatar's configs disable it.
const Proxy = "kube-proxy"

// target is one node: where it answers, its role, and the images its new config names.
type target struct {
	n            input.Node
	controlPlane bool
	images       map[string]string // component -> image
	newArgs      map[string]map[string][]string
	newGates     []string // machine.kubelet.extraConfig.featureGates
}

type run struct {
	s            *input.Secrets
	to           string // vX.Y.Z
	minor        int
	cps, workers input.NodeList
	targets      []*target
	t            *talos.Talosconfig
	k            *kube.Client
	stable       time.Duration // --pods-stable
	reachBound   time.Duration // --reach-timeout: how long each node gets to answer
	skipped      []*target     // workers that did not answer (their own apply takes the new config)
}

// Parse reads kubernetes-upgrade's arguments and stdin, contacting nothing.
func Parse(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("kubernetes-upgrade")

	var cps, workers input.NodeList

	f.Var(&cps, "control-plane", "NAME=IP of a control plane (repeatable, in rollout order)")
	f.Var(&workers, "worker", "NAME=IP of a worker (repeatable, in rollout order)")
	to := f.String("to", "", "the target Kubernetes version, vX.Y.Z")
	timeout := f.Timeout()
	stable := f.Duration("pods-stable", staticpods.DefaultStable, "how long a control plane's restarted static pod must run untouched (and the pods Talos serves stay unchanged after a change) before they count")
	reachBound := f.Duration("reach-timeout", ReachBound, "how long each node gets to answer before a worker is left to its own apply and a control plane fails the step")

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	minor, ok := minorOf(*to)
	if !ok || !strings.HasPrefix(*to, "v") || strings.Count(*to, ".") != 2 {
		return nil, input.Usagef("--to must be vX.Y.Z")
	}

	if len(cps) == 0 {
		return nil, input.Usagef("give at least one --control-plane NAME=IP")
	}

	if *stable <= 0 || *reachBound <= 0 {
		return nil, input.Usagef("--pods-stable and --reach-timeout must be positive")
	}

	s, err := input.ReadSecrets(stdin)
	if err != nil {
		return nil, err
	}

	if err := s.Require("talosconfig", "machineConfigs"); err != nil {
		return nil, err
	}

	r := &run{s: s, to: *to, minor: minor, cps: cps, workers: workers, stable: *stable, reachBound: *reachBound}
	named := map[string]bool{}

	for _, n := range append(append(input.NodeList{}, cps...), workers...) {
		if named[n.Name] {
			return nil, input.Usagef("node %s given twice", n.Name)
		}

		named[n.Name] = true

		if _, ok := s.MachineConfigs[n.Name]; !ok {
			return nil, input.Usagef("stdin: machineConfigs.%s is required (the node's new machine config)", n.Name)
		}
	}

	for name := range s.MachineConfigs {
		if !named[name] {
			return nil, input.Usagef("stdin: machineConfigs.%s: no --control-plane or --worker names it", name)
		}
	}

	return func(ctx context.Context) error { return r.start(ctx, *timeout) }, nil
}

// readTargets reads each node's new config (what stdin holds, checked before anything is contacted).
func (r *run) readTargets() error {
	for _, group := range []struct {
		nodes input.NodeList
		cp    bool
	}{{r.cps, true}, {r.workers, false}} {
		for _, n := range group.nodes {
			t, err := newTarget(n, group.cp, r.s.MachineConfigs[n.Name], r.to)
			if err != nil {
				return err
			}

			r.targets = append(r.targets, t)
		}
	}

	return nil
}

// newTarget reads a node's new config: its role, and the images it names, each at the target version.
func newTarget(n input.Node, controlPlane bool, raw, to string) (*target, error) {
	where := "stdin: machineConfigs." + n.Name

	if raw == "" {
		return nil, input.Usagef("%s is required (the node's new machine config)", where)
	}

	cfg, err := talos.LoadConfig(raw)
	if err != nil || cfg.Machine() == nil {
		return nil, input.Usagef("%s is not a Talos machine config with a machine section", where)
	}

	if isCP := cfg.Machine().Type() == machine.TypeControlPlane || cfg.Machine().Type() == machine.TypeInit; isCP != controlPlane {
		return nil, input.Usagef("%s is a %s config, but the node is given as a %s", where, cfg.Machine().Type(), map[bool]string{true: "--control-plane", false: "--worker"}[controlPlane])
	}

	t := &target{n: n, controlPlane: controlPlane, images: configImages(cfg), newArgs: extraArgs(cfg), newGates: featureGatesOf(cfg.Machine().Kubelet().ExtraConfig())}

	for _, c := range components(controlPlane) {
		if tag := kube.TagOf(t.images[c]); tag != to && !strings.HasPrefix(tag, to+"-") {
			return nil, input.Usagef("%s: %s is %q, not at --to %s", where, configPath(c)+".image", t.images[c], to)
		}
	}

	return t, nil
}

// components are the images a node's config names that a Kubernetes version moves.
func components(controlPlane bool) []string {
	if controlPlane {
		return []string{talos.APIServer, talos.ControllerManager, talos.Scheduler, Proxy, Kubelet}
	}

	return []string{Kubelet}
}

func configImages(cfg coreconfig.Provider) map[string]string {
	out := map[string]string{Kubelet: cfg.Machine().Kubelet().Image()}

	if cl := cfg.Cluster(); cl != nil && cfg.Machine().Type().IsControlPlane() {
		out[talos.APIServer] = cl.APIServer().Image()
		out[talos.ControllerManager] = cl.ControllerManager().Image()
		out[talos.Scheduler] = cl.Scheduler().Image()
		out[Proxy] = cl.Proxy().Image()
	}

	return out
}

func extraArgs(cfg coreconfig.Provider) map[string]map[string][]string {
	out := map[string]map[string][]string{Kubelet: cfg.Machine().Kubelet().ExtraArgs()}

	if cl := cfg.Cluster(); cl != nil && cfg.Machine().Type().IsControlPlane() {
		out[talos.APIServer] = cl.APIServer().ExtraArgs()
		out[talos.ControllerManager] = cl.ControllerManager().ExtraArgs()
		out[talos.Scheduler] = cl.Scheduler().ExtraArgs()
	}

	return out
}

// configPath is where a component's settings are in a machine config (YAML spelling).
func configPath(component string) string {
	switch component {
	case talos.APIServer:
		return "cluster.apiServer"
	case talos.ControllerManager:
		return "cluster.controllerManager"
	case talos.Scheduler:
		return "cluster.scheduler"
	case Proxy:
		return "cluster.proxy"
	}

	return "machine.kubelet"
}

func minorOf(version string) (int, bool) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, false
	}

	if major, err := strconv.Atoi(parts[0]); err != nil || major != 1 {
		return 0, false
	}

	minor, err := strconv.Atoi(parts[1])

	return minor, err == nil
}

// node is one target as found: its Talos client and running config (nil when skipped).
type node struct {
	*target
	c         *client.Client
	lifecycle bool
	running   coreconfig.Provider
	pods      *staticpods.Watch // a control plane's static pods (staticPod)
}

func (r *run) start(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var err error

	if r.t, err = talos.New(r.s); err != nil {
		return err
	}

	if err := r.readTargets(); err != nil {
		return err
	}

	nodes, err := r.reach(ctx)

	defer func() {
		for _, n := range nodes {
			n.c.Close() //nolint:errcheck
		}
	}()

	if err != nil {
		return err
	}

	if err := r.connectKube(ctx, nodes); err != nil {
		return err
	}

	if err := r.checkSkipped(ctx); err != nil {
		return err
	}

	// Nothing changes before every node passed: a removed flag would crash-loop its component.
	if err := r.checkRemoved(nodes); err != nil {
		return err
	}

	var cps []*node

	for _, n := range nodes {
		if n.controlPlane {
			cps = append(cps, n)
		}
	}

	for _, component := range talos.ControlPlaneComponents {
		report.Progress(r.to, "%s, one control plane at a time", component)

		for _, n := range cps {
			if err := r.staticPod(ctx, n, component); err != nil {
				return err
			}
		}
	}

	for _, n := range cps {
		if err := r.proxy(ctx, n); err != nil {
			return err
		}
	}

	report.Progress(r.to, "the kubelets, one node at a time: control planes, then workers")

	for _, n := range nodes {
		if err := r.kubelet(ctx, n); err != nil {
			return err
		}
	}

	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.n.Name)
	}

	report.Progress(r.to, "Kubernetes %s on %s: API servers, controller-managers, schedulers, then kubelets", r.to, strings.Join(names, ", "))

	return nil
}

// ReachBound is how long each node gets to answer: as long as Talos gets to answer after a power-on
// (plans/power.py, PROBE_SECONDS: an RK1 boots Talos in about a minute), so a node that is rebooting
// is waited for, and one that is off or gone is found out in minutes, not at the end of the step's
// bound (which counts every machine's pulls and restarts).
const ReachBound = 5 * time.Minute

// reach connects to every node and reads its running config. A node in maintenance mode is skipped:
// it takes its new config, images and all, at its own apply. So is a worker that does not answer
// within the reach bound, with a warning (checkSkipped: its kubelet may stay behind the API servers);
// a control plane that does not answer fails the step before anything changes: its API server would
// stay at the old version while the kubelets move past it.
func (r *run) reach(ctx context.Context) ([]*node, error) {
	var out []*node

	for _, t := range r.targets {
		state := ""
		look := fmt.Sprintf("talosctl -n %s version; the machine's console", t.n.IP)
		said := false

		nctx, cancel := context.WithTimeout(ctx, r.reachBound)
		err := wait.Poll(nctx, wait.Every, func(ctx context.Context) error {
			s, err := r.t.Classify(ctx, t.n)
			if s == talos.Unreachable {
				if !said {
					report.Progress(t.n.Name, "does not answer at %s: waiting up to %s for it", t.n.IP, r.reachBound)

					said = true
				}

				return report.Checkf("reach", look, "the node does not answer: %s", talos.Message(err))
			}

			state = s

			return nil
		})

		cancel()

		if err != nil && ctx.Err() != nil {
			return out, report.From(t.n.Name, "reach", look, err)
		}

		if err != nil && t.controlPlane {
			f := report.From(t.n.Name, "reach", look, err)
			f.Detail = fmt.Sprintf("a control plane that does not answer within %s: every API server must go to %s before any kubelet does, so nothing was changed (%s)", r.reachBound, r.to, f.Detail)

			return out, f
		}

		if err != nil {
			report.Progress(t.n.Name, "WARNING: does not answer within %s: skipped; its kubelet stays at its version until its own apply installs the new config", r.reachBound)
			r.skipped = append(r.skipped, t)

			continue
		}

		if state == talos.Maintenance {
			report.Progress(t.n.Name, "in maintenance mode: skipped (its own apply installs the new config, images and all)")

			continue
		}

		c, err := r.t.Connect(ctx, t.n)
		if err != nil {
			return out, err
		}

		n := &node{target: t, c: c}
		out = append(out, n)

		version, err := talos.Version(ctx, c)
		if err != nil {
			return out, report.From(t.n.Name, "version", talosLook(t.n, "version"), err)
		}

		n.lifecycle = talos.LifecycleAPI(version)

		if n.running, _, err = talos.MachineConfigs(ctx, c); err != nil || n.running == nil {
			detail := "the node has no active config"
			if err != nil {
				detail = talos.Message(err)
			}

			return out, &report.Failure{Node: t.n.Name, Check: "config", Detail: detail, Look: talosLook(t.n, "get machineconfig")}
		}
	}

	return out, nil
}

// KubeletSkew is how many minors a kubelet may be older than the API servers (Kubernetes' version
// skew policy, https://kubernetes.io/releases/version-skew-policy/#kubelet: since 1.28 up to three,
// and never newer).
const KubeletSkew = 3

// checkSkipped refuses, before anything changes, to leave a worker behind whose kubelet would then be
// more than KubeletSkew minors older than the API servers (its Node says what it runs).
func (r *run) checkSkipped(ctx context.Context) error {
	for _, t := range r.skipped {
		got, err := r.k.KubeletVersion(ctx, t.n.Name)
		if err != nil {
			report.Progress(t.n.Name, "its Node cannot be read (%s): its kubelet's version is not known", report.FirstLine(err))

			continue
		}

		if minor, ok := minorOf(got); ok && r.minor-minor > KubeletSkew {
			return &report.Failure{Node: t.n.Name, Check: "reach", Look: kube.NodeLook(t.n.Name), Detail: fmt.Sprintf(
				"does not answer, and its kubelet runs %s: with the API servers at %s it would be more than %d minors behind, which Kubernetes does not support; bring it back (or take it out of the inventory), then run again; nothing was changed",
				got, r.to, KubeletSkew)}
		}

		report.Progress(t.n.Name, "its kubelet runs %s: within %d minors of %s, so the upgrade goes on without it", got, KubeletSkew, r.to)
	}

	return nil
}

func talosLook(n input.Node, what string) string { return fmt.Sprintf("talosctl -n %s %s", n.IP, what) }

func (r *run) connectKube(ctx context.Context, nodes []*node) error {
	text := r.s.Kubeconfig
	if text == "" {
		var err error

		first := r.targets[0].n
		if len(nodes) > 0 {
			first = nodes[0].n
		}

		if text, err = r.t.FetchKubeconfig(ctx, first, true); err != nil {
			return &report.Failure{Node: first.Name, Check: "kubeconfig", Detail: report.FirstLine(err), Look: "talosctl kubeconfig -"}
		}
	}

	k, err := kube.New(text, "")
	if err != nil {
		return input.Usagef("stdin: %s", err)
	}

	r.k = k

	return nil
}

// checkRemoved refuses, before anything changes, a flag, feature gate or admission plugin the target
// removed: in the new config (the component would not start at the target), or in the running one
// the new config drops (this step changes images only, so the component would start with it).
func (r *run) checkRemoved(nodes []*node) error {
	for _, n := range nodes {
		running := extraArgs(n.running)
		runningImages := configImages(n.running)

		for _, c := range []string{talos.APIServer, talos.ControllerManager, talos.Scheduler, Kubelet} {
			if _, ok := n.newArgs[c]; !ok {
				continue
			}

			from, ok := minorOf(kube.TagOf(runningImages[c]))
			if !ok {
				from = r.minor - 1
			}

			look := talosLook(n.n, "get machineconfig -o yaml")
			path := configPath(c) + ".extraArgs"

			if found := removedBy(c, n.newArgs[c], from, r.minor); len(found) > 0 {
				return &report.Failure{Node: n.n.Name, Check: "removed-flag", Look: look, Detail: fmt.Sprintf(
					"the new config's %s sets %s: %s would not start at %s; remove it where the stack sets it (iluvatar:arda.patches or the node's talosPatches); nothing was changed",
					path, joinFindings(found), c, r.to)}
			}

			if found := removedBy(c, running[c], from, r.minor); len(found) > 0 {
				return &report.Failure{Node: n.n.Name, Check: "removed-flag", Look: look, Detail: fmt.Sprintf(
					"its running config's %s sets %s; the new config drops it, but this step changes only images, so %s would start with it at %s: roll the change out at the running version first (arda.kubernetesVersion %s for one pulumi up), then upgrade; nothing was changed",
					path, joinFindings(found), c, r.to, "v"+strings.TrimPrefix(kube.TagOf(runningImages[c]), "v"))}
			}
		}

		if err := r.checkKubeletGates(n, runningImages); err != nil {
			return err
		}
	}

	report.Progress(r.to, "no flag, feature gate or admission plugin %s removed is set on any node", r.to)

	return nil
}

// checkKubeletGates is checkRemoved for the kubelet's machine.kubelet.extraConfig.featureGates.
func (r *run) checkKubeletGates(n *node, runningImages map[string]string) error {
	from, ok := minorOf(kube.TagOf(runningImages[Kubelet]))
	if !ok {
		from = r.minor - 1
	}

	look := talosLook(n.n, "get machineconfig -o yaml")
	path := configPath(Kubelet) + ".extraConfig.featureGates"

	if found := gatesRemovedBy(n.newGates, from, r.minor); len(found) > 0 {
		return &report.Failure{Node: n.n.Name, Check: "removed-flag", Look: look, Detail: fmt.Sprintf(
			"the new config's %s sets %s: kubelet would not start at %s; remove it where the stack sets it (iluvatar:arda.patches or the node's talosPatches); nothing was changed",
			path, joinFindings(found), r.to)}
	}

	if found := gatesRemovedBy(featureGatesOf(n.running.Machine().Kubelet().ExtraConfig()), from, r.minor); len(found) > 0 {
		return &report.Failure{Node: n.n.Name, Check: "removed-flag", Look: look, Detail: fmt.Sprintf(
			"its running config's %s sets %s; the new config drops it, but this step changes only images, so kubelet would start with it at %s: roll the change out at the running version first (arda.kubernetesVersion %s for one pulumi up), then upgrade; nothing was changed",
			path, joinFindings(found), r.to, "v"+strings.TrimPrefix(kube.TagOf(runningImages[Kubelet]), "v"))}
	}

	return nil
}

func joinFindings(found []finding) string {
	parts := make([]string, 0, len(found))
	for _, f := range found {
		parts = append(parts, f.String())
	}

	sort.Strings(parts)

	return strings.Join(parts, ", ")
}

// apply is patchNodeConfig (patch.go:21-55): the node's running config with one change, applied
// without a reboot. The running config is read again first (an earlier change may have gone in).
func (r *run) apply(ctx context.Context, n *node, what string, patch func(*v1alpha1.Config), before func(active, patched coreconfig.Provider) error) error {
	look := talosLook(n.n, "get machineconfig -o yaml")

	active, _, err := talos.MachineConfigs(ctx, n.c)
	if err != nil || active == nil {
		return &report.Failure{Node: n.n.Name, Check: "config", Detail: fmt.Sprintf("the running config cannot be read: %v", err), Look: look}
	}

	patched, err := active.PatchV1Alpha1(func(c *v1alpha1.Config) error {
		patch(c)

		return nil
	})
	if err != nil {
		return &report.Failure{Node: n.n.Name, Check: "config", Detail: "patching the running config: " + err.Error(), Look: look}
	}

	if before != nil {
		if err := before(active, patched); err != nil {
			return err
		}
	}

	raw, err := patched.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return &report.Failure{Node: n.n.Name, Check: "config", Detail: "encoding the running config: " + err.Error(), Look: look}
	}

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	if _, err := n.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: raw, Mode: machineapi.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
		return &report.Failure{Node: n.n.Name, Check: "apply", Detail: "Talos refused the patched config: " + talos.Message(err), Look: talosLook(n.n, "apply-config --mode no-reboot --dry-run --file CONFIG")}
	}

	n.running = patched
	report.Progress(n.n.Name, "%s: config patched and applied without a reboot", what)

	return nil
}

// staticPod is upgradeStaticPodOnNode (talos_managed.go:280-354): the image patched unless the running
// config names it already, then, unlike talosctl, every control plane pod on the node waited for as
// Talos serves it (staticpods.Watch): a change of one component's config can restart another (the
// scheduler's config is in the API server's talos.dev/config-file-version), and each restarted pod
// must run, untouched, and the node's API server answer /readyz, before the next change.
func (r *run) staticPod(ctx context.Context, n *node, component string) error {
	image := n.images[component]

	if n.pods == nil {
		n.pods = staticpods.Now(n.c, r.k, n.n.Name, n.n.IP, r.stable)
	}

	old := configImages(n.running)[component]

	if r.past(old) {
		report.Progress(n.n.Name, "%s: already %s, past %s: left alone (a step on the way run again, never backwards)", component, tagOr(old), r.to)
	} else if old != image {
		if err := pull(ctx, n, talos.CRIContainerd(), image, "image pull "+image); err != nil {
			return err
		}

		if err := r.apply(ctx, n, fmt.Sprintf("%s %s -> %s", component, tagOr(old), tagOr(image)), func(c *v1alpha1.Config) {
			setImage(c, component, image)
		}, func(active, patched coreconfig.Provider) error {
			if err := n.pods.Before(ctx, active, patched); err != nil {
				return report.From(n.n.Name, "static-pods", "", err)
			}

			return nil
		}); err != nil {
			return err
		}
	} else {
		report.Progress(n.n.Name, "%s: already %s (checking its pod)", component, tagOr(image))
	}

	if err := r.wait(ctx, n, func(ctx context.Context) error { return n.pods.Check(ctx, n.running) }); err != nil {
		return err
	}

	report.Progress(n.n.Name, "%s %s running, and every control plane pod on the node as Talos serves it", component, tagOr(image))

	return nil
}

// pull pulls an image onto the node (talos.PullTo, which tries again when the call itself breaks).
func pull(ctx context.Context, n *node, ci *common.ContainerdInstance, image, what string) error {
	if err := talos.PullTo(ctx, n.c, n.lifecycle, ci, image); err != nil {
		return &report.Failure{Node: n.n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", image, talos.Message(err)), Look: talosLook(n.n, what)}
	}

	return nil
}

// proxy puts the new kube-proxy image in a control plane's config, as upgradeKubeProxy does
// (talos_managed.go:230-264), waiting for nothing: Iluvatar's configs disable kube-proxy, so no
// DaemonSet runs it; the per-node apply then finds this part of the config done too.
func (r *run) proxy(ctx context.Context, n *node) error {
	image := n.images[Proxy]
	if old := configImages(n.running)[Proxy]; old != image && !r.past(old) {
		return r.apply(ctx, n, fmt.Sprintf("%s %s -> %s (config only: Iluvatar runs no kube-proxy)", Proxy, tagOr(old), tagOr(image)), func(c *v1alpha1.Config) {
			setImage(c, Proxy, image)
		}, nil)
	}

	return nil
}

// kubelet is upgradeKubeletOnNode (kubelet.go:51-168): the image patched unless the running config
// names it already, then the Node reporting the target version, Ready (checkNodeKubeletVersion).
func (r *run) kubelet(ctx context.Context, n *node) error {
	image := n.images[Kubelet]
	old := configImages(n.running)[Kubelet]
	past := r.past(old)

	if past {
		report.Progress(n.n.Name, "kubelet: already %s, past %s: left alone (a step on the way run again, never backwards)", tagOr(old), r.to)
	} else if old != image {
		if err := pull(ctx, n, talos.SystemContainerd(), image, "image pull --namespace system "+image); err != nil {
			return err
		}

		if err := r.apply(ctx, n, fmt.Sprintf("%s %s -> %s", Kubelet, tagOr(old), tagOr(image)), func(c *v1alpha1.Config) {
			setImage(c, Kubelet, image)
		}, nil); err != nil {
			return err
		}
	} else {
		report.Progress(n.n.Name, "kubelet: already %s (checking its Node)", tagOr(image))
	}

	if err := r.wait(ctx, n, func(ctx context.Context) error {
		got, err := r.k.KubeletVersion(ctx, n.n.Name)
		if err != nil {
			return report.Checkf("kubelet", kube.NodeLook(n.n.Name), "%s", report.FirstLine(err))
		}

		if got != r.to && !(past && r.past(got)) {
			return report.Checkf("kubelet", kube.NodeLook(n.n.Name), "Node %s reports kubelet %s, not %s", n.n.Name, got, r.to)
		}

		if err := r.k.NodeReady(ctx, n.n.Name); err != nil {
			return report.Checkf("node-ready", kube.NodeLook(n.n.Name), "%s", report.FirstLine(err))
		}

		return nil
	}); err != nil {
		return err
	}

	if past {
		report.Progress(n.n.Name, "kubelet %s (past %s) running, Node Ready", tagOr(old), r.to)

		return nil
	}

	report.Progress(n.n.Name, "kubelet %s running, Node Ready", r.to)

	return nil
}

// wait polls check within the command's timeout, saying what it waits for each time that changes.
func (r *run) wait(ctx context.Context, n *node, check func(context.Context) error) error {
	said := ""

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		err := check(ctx)

		var c *report.Check
		if errors.As(err, &c) && c.Err.Error() != said {
			report.Progress(n.n.Name, "waiting: %s: %s", c.Name, c.Err)

			said = c.Err.Error()
		}

		return err
	})
	if err != nil {
		return report.From(n.n.Name, "kubernetes-upgrade", talosLook(n.n, "get machinestatus"), err)
	}

	return nil
}

// past is whether an image (or a version) is a newer Kubernetes release than --to. A path's step on the way
// (stacks.releases.talos_path) can run again after the cluster moved past it: Pulumi re-runs a finished step whose
// stdin changed (a patch fixed, the talosconfig renewed: shared/engine-facts.md), and running its --to then would
// take a component back a minor over etcd data a newer release wrote, which Kubernetes does not support. As
// hopNeeded does for a Talos roll (apply/path.go), a component already past the target counts as done.
func (r *run) past(image string) bool {
	v := image
	if tag := kube.TagOf(image); tag != "" {
		v = tag
	}

	have, ok := parseVersion(v)
	want, wok := parseVersion(r.to)

	return ok && wok && versionLess(want, have)
}

func parseVersion(v string) ([3]int, bool) {
	parts := strings.SplitN(strings.SplitN(strings.TrimPrefix(v, "v"), "-", 2)[0], ".", 3)
	if len(parts) != 3 {
		return [3]int{}, false
	}

	var out [3]int

	for i, p := range parts {
		n, err := strconv.Atoi(strings.SplitN(p, "+", 2)[0])
		if err != nil {
			return [3]int{}, false
		}

		out[i] = n
	}

	return out, true
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}

	return false
}

func tagOr(image string) string {
	if tag := kube.TagOf(image); tag != "" {
		return tag
	}

	return image
}

// setImage replaces one component's image in a v1alpha1 config (talos_managed.go:409-454 and
// kubelet.go:180-229: the section made when absent).
func setImage(c *v1alpha1.Config, component, image string) {
	if c.ClusterConfig == nil {
		c.ClusterConfig = &v1alpha1.ClusterConfig{}
	}

	switch component {
	case talos.APIServer:
		if c.ClusterConfig.APIServerConfig == nil {
			c.ClusterConfig.APIServerConfig = &v1alpha1.APIServerConfig{}
		}

		c.ClusterConfig.APIServerConfig.ContainerImage = image
	case talos.ControllerManager:
		if c.ClusterConfig.ControllerManagerConfig == nil {
			c.ClusterConfig.ControllerManagerConfig = &v1alpha1.ControllerManagerConfig{}
		}

		c.ClusterConfig.ControllerManagerConfig.ContainerImage = image
	case talos.Scheduler:
		if c.ClusterConfig.SchedulerConfig == nil {
			c.ClusterConfig.SchedulerConfig = &v1alpha1.SchedulerConfig{}
		}

		c.ClusterConfig.SchedulerConfig.ContainerImage = image
	case Proxy:
		if c.ClusterConfig.ProxyConfig == nil {
			c.ClusterConfig.ProxyConfig = &v1alpha1.ProxyConfig{}
		}

		c.ClusterConfig.ProxyConfig.ContainerImage = image
	case Kubelet:
		if c.MachineConfig == nil {
			c.MachineConfig = &v1alpha1.MachineConfig{}
		}

		if c.MachineConfig.MachineKubelet == nil {
			c.MachineConfig.MachineKubelet = &v1alpha1.KubeletConfig{}
		}

		c.MachineConfig.MachineKubelet.KubeletImage = image
	}
}
