// Package staticpods is the wait for a control plane's static pods after a change: the pods Talos
// serves (StaticPods.kubernetes.talos.dev), rendered anew where the change moved one of their
// talos.dev/* annotations, then the kubelet running exactly those, each container up and untouched
// for a while, and the node's own API server ready. apply and kubernetes-upgrade share it.
//
// Why each part:
//
//   - Talos renders after ApplyConfiguration has answered: the pods it serves just after may still be
//     the old ones, and the old mirror pods carry their annotations (talosctl waits for the config
//     resource's Updated event: pkg/cluster/kubernetes/talos_managed.go:334-345 at v1.13.0). So the
//     pods the change must move (talos.Restarts) are read before it, and waited for until their
//     annotations move; and, for what that model misses, the pods Talos serves must then stay as they
//     are for Stable before they count as rendered.
//   - Each pod carries three annotations, and any of them moving restarts it (a scheduler config
//     change moves the API server's config-file-version, a secrets change all three pods'
//     secrets-version), so a mirror pod counts only with all of them equal to what Talos serves.
//   - The kubelet polls the static pod URL every 20 s (Talos leaves httpCheckFrequency to the kubelet:
//     kubelet_spec.go:284 at v1.13.0; Kubernetes v1.34.1 pkg/kubelet/apis/config/v1beta1/defaults.go:83-84):
//     until then the old pod stays, Ready.
//   - Ready says little for kube-apiserver, which Talos gives no probe (kube.checkStaticPod): its own
//     /readyz, at the node's address and local port, says whether it serves; and every container must
//     have run Stable since it last started, so one that crash-loops never counts.
//   - After a reboot a mirror pod left from the boot before can carry the same annotations (COSI
//     versions restart at 1 on every boot: Talos keeps them in memory, internal/app/machined/pkg/runtime/
//     v1alpha2/v1alpha2_state.go:54, cosi-project/runtime v1.14.1 pkg/state/impl/inmem/collection.go:
//     152-157), Ready from that boot: its container must have started after the node's boot. For the
//     same reason versions read before a change mean nothing after a reboot: the watch drops them when
//     the node's boot ID changes.
package staticpods

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

// DefaultStable is how long a restarted control plane container must run untouched before it counts,
// and how long the pods Talos serves must stay unchanged after a change: three times the kubelet's
// default liveness period (periodSeconds 10, failureThreshold 3: k8s.io/api v0.34.1 core/v1 defaults),
// the time in which the kubelet restarts a controller-manager or scheduler whose /healthz fails
// (Talos probes both: control_plane_static_pod.go:691-714, 803-835 at v1.13.0). A component that
// cannot start (a bad flag, a file it cannot read) exits within seconds, and the kubelet's crash-loop
// back-off starts at 10 s (Kubernetes v1.34.1 pkg/kubelet/kubelet.go:216), so a container that has run
// 30 s since it last started is past both.
const DefaultStable = 30 * time.Second

// Watch is one control plane's static pods through a change.
type Watch struct {
	Node   string
	IP     string // where the node's own API server answers
	Stable time.Duration

	c *client.Client
	k *kube.Client

	boot     string    // the boot ID when the watch began ("": not read yet)
	bootTime time.Time // that boot's start, by the node's clock

	// before: what Talos served before the change, and moves the annotations the change moves, by
	// component (nil: no change pending).
	before map[string]talos.ServedPod
	moves  map[string][]string
	// served: what Talos served at the last look after a change, and since when (by this clock).
	served  map[string]talos.ServedPod
	settled time.Time
	// counted: served had stayed unchanged for Stable and counted as rendered; a change after that is
	// Talos rendering again (a later controller run, a second change), said as it is seen.
	counted bool
}

// Now is a watch of the pods as they are: no change pending (a health check, or after a reboot, when
// Talos rendered every pod anew).
func Now(c *client.Client, k *kube.Client, node, ip string, stable time.Duration) *Watch {
	return &Watch{Node: node, IP: ip, Stable: stable, c: c, k: k}
}

// Use sets the clients and address the watch asks through (a node that moved, a new connection).
func (w *Watch) Use(c *client.Client, k *kube.Client, ip string) {
	w.c, w.k, w.IP = c, k, ip
}

// Before reads, before a change Talos applies without a reboot, the node's boot and the pods Talos
// serves, and which of them the change from active to next renders anew (it says which).
func (w *Watch) Before(ctx context.Context, active, next coreconfig.Provider) error {
	w.before, w.moves, w.served = nil, nil, nil

	moves := talos.Restarts(active, next)

	boot, err := talos.BootID(ctx, w.c)
	if err != nil {
		return report.Checkf("boot-id", fmt.Sprintf("talosctl -n %s read /proc/sys/kernel/random/boot_id", w.IP), "%s", talos.Message(err))
	}

	served, err := talos.ServedPods(ctx, w.c)
	if err != nil {
		return report.Checkf("static-pods", talos.ServedLook(w.IP), "%s", talos.Message(err))
	}

	if w.boot != boot {
		w.boot, w.bootTime = boot, time.Time{}
	}

	w.before, w.moves, w.settled, w.counted = served, moves, time.Time{}, false
	if w.moves == nil {
		w.moves = map[string][]string{}
	}

	if names := talos.RestartNames(moves); len(names) > 0 {
		var parts []string
		for _, name := range names {
			parts = append(parts, fmt.Sprintf("%s (%s)", name, strings.Join(moves[name], ", ")))
		}

		report.Progress(w.Node, "the change renders %s anew: waiting for the new pods after it", strings.Join(parts, ", "))
	}

	return nil
}

// Pending: a change's pods are still awaited.
func (w *Watch) Pending() bool { return w.before != nil }

// Check is one look: nil once the node runs what cfg (its config now) makes Talos serve, or a
// report.Check saying what it waits for.
func (w *Watch) Check(ctx context.Context, cfg coreconfig.Provider) error {
	if err := w.checkBoot(ctx); err != nil {
		return err
	}

	served, err := talos.ServedPods(ctx, w.c)
	if err != nil {
		return report.Checkf("static-pods", talos.ServedLook(w.IP), "%s", talos.Message(err))
	}

	if err := w.checkServed(served, cfg, time.Now()); err != nil {
		return err
	}

	want := map[string]kube.PodWant{}
	images := Images(cfg)

	for name, pod := range served {
		want[name] = kube.PodWant{Image: images[name], Annotations: pod.Annotations, Since: w.bootTime, Stable: w.Stable}
	}

	if err := w.k.StaticPods(ctx, w.Node, want); err != nil {
		return report.Checkf("control-plane-pods", fmt.Sprintf("kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=%s", w.Node), "%s", report.FirstLine(err))
	}

	port := cfg.Cluster().LocalAPIServerPort()
	if err := w.k.ReadyzAt(ctx, w.IP, port); err != nil {
		return report.Checkf("api-server", fmt.Sprintf("kubectl --server https://%s:%d get --raw '/readyz?verbose'", w.IP, port),
			"kube-apiserver on %s (%s:%d): %s", w.Node, w.IP, port, report.FirstLine(err))
	}

	w.before, w.moves, w.served = nil, nil, nil

	return nil
}

// checkBoot reads the node's boot: a new one (a reboot, a crash) drops what was read before it.
func (w *Watch) checkBoot(ctx context.Context) error {
	look := fmt.Sprintf("talosctl -n %s read /proc/sys/kernel/random/boot_id", w.IP)

	boot, err := talos.BootID(ctx, w.c)
	if err != nil {
		return report.Checkf("boot-id", look, "%s", talos.Message(err))
	}

	if w.boot != "" && boot != w.boot {
		if w.before != nil {
			report.Progress(w.Node, "booted anew (boot %s) while its pods were awaited: Talos renders every pod anew at a boot, so the pods it serves now are the ones", boot)
		}

		w.before, w.moves, w.served, w.bootTime = nil, nil, nil, time.Time{}
	}

	w.boot = boot

	if w.bootTime.IsZero() {
		if w.bootTime, err = talos.BootTime(ctx, w.c); err != nil {
			return report.Checkf("boot-time", fmt.Sprintf("talosctl -n %s stats", w.IP), "%s", talos.Message(err))
		}
	}

	return nil
}

// checkServed: Talos serves a pod for each component the config enables, and none for one it
// disables; after a change, the pods it moves are rendered anew and the pods have stayed as they are
// for Stable.
func (w *Watch) checkServed(served map[string]talos.ServedPod, cfg coreconfig.Provider, now time.Time) error {
	look := talos.ServedLook(w.IP)
	enabled := Enabled(cfg)

	for _, name := range talos.ControlPlaneComponents {
		_, on := served[name]

		switch {
		case enabled[name] && !on:
			return report.Checkf("static-pods", look, "Talos serves no %s pod yet", name)
		case !enabled[name] && on:
			return report.Checkf("static-pods", look, "Talos still serves a %s pod, which the config disables", name)
		}
	}

	if w.before == nil {
		return nil
	}

	for _, name := range talos.RestartNames(w.moves) {
		old, had := w.before[name]
		if !had || !enabled[name] {
			continue
		}

		for _, a := range w.moves[name] {
			if v := served[name].Annotations[a]; v == old.Annotations[a] {
				return report.Checkf("static-pods", look, "Talos has not rendered %s's new pod yet (its %s is still %s)", name, a, orNone(v))
			}
		}
	}

	if !sameServed(w.served, served) {
		if w.counted {
			report.Progress(w.Node, "the pods Talos serves changed after they had counted as rendered (%s): they count again once unchanged for %s",
				changes(w.served, served), w.Stable)
		}

		w.served, w.settled, w.counted = served, now, false
	}

	if since := now.Sub(w.settled); since < w.Stable {
		return report.Checkf("static-pods", look,
			"the pods Talos serves last changed %s ago (%s): they count once unchanged for %s, as Talos renders them after the apply answers",
			since.Truncate(100*time.Millisecond), describe(served), w.Stable)
	}

	w.counted = true

	return nil
}

func sameServed(a, b map[string]talos.ServedPod) bool {
	if a == nil || len(a) != len(b) {
		return false
	}

	for name, pod := range a {
		if other, ok := b[name]; !ok || !pod.Same(other) {
			return false
		}
	}

	return true
}

func describe(served map[string]talos.ServedPod) string {
	names := make([]string, 0, len(served))
	for name := range served {
		names = append(names, name)
	}

	sort.Strings(names)

	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s: %s", name, served[name].Describe()))
	}

	return strings.Join(parts, "; ")
}

// changes says how the pods Talos serves moved from a to b, pod by pod: their image and each
// talos.dev/* annotation (Describe leaves the image out).
func changes(a, b map[string]talos.ServedPod) string {
	names := map[string]bool{}
	for name := range a {
		names[name] = true
	}

	for name := range b {
		names[name] = true
	}

	sorted := make([]string, 0, len(names))
	for name := range names {
		sorted = append(sorted, name)
	}

	sort.Strings(sorted)

	var parts []string

	for _, name := range sorted {
		old, had := a[name]
		now, has := b[name]

		switch {
		case !had:
			parts = append(parts, fmt.Sprintf("%s: served anew (%s)", name, now.Describe()))
		case !has:
			parts = append(parts, name+": no longer served")
		default:
			if old.Image != now.Image {
				parts = append(parts, fmt.Sprintf("%s: image %s -> %s", name, orNone(old.Image), orNone(now.Image)))
			}

			keys := map[string]bool{}
			for k := range old.Annotations {
				keys[k] = true
			}

			for k := range now.Annotations {
				keys[k] = true
			}

			ks := make([]string, 0, len(keys))
			for k := range keys {
				ks = append(ks, k)
			}

			sort.Strings(ks)

			for _, k := range ks {
				if old.Annotations[k] != now.Annotations[k] {
					parts = append(parts, fmt.Sprintf("%s: %s %s -> %s", name, k, orNone(old.Annotations[k]), orNone(now.Annotations[k])))
				}
			}
		}
	}

	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}

	return s
}

// Images are the control plane images a config names, by component.
func Images(cfg coreconfig.Provider) map[string]string {
	cl := cfg.Cluster()

	return map[string]string{
		talos.APIServer:         cl.APIServer().Image(),
		talos.ControllerManager: cl.ControllerManager().Image(),
		talos.Scheduler:         cl.Scheduler().Image(),
	}
}

// Enabled are the components a config runs (the controller-manager and the scheduler can be
// disabled: Talos then serves no pod for them, control_plane_static_pod.go's manageControllerManager
// and manageScheduler).
func Enabled(cfg coreconfig.Provider) map[string]bool {
	cp := cfg.Machine().Controlplane()

	return map[string]bool{
		talos.APIServer:         true,
		talos.ControllerManager: !cp.ControllerManager().Disabled(),
		talos.Scheduler:         !cp.Scheduler().Disabled(),
	}
}
