package apply

import (
	"context"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

// A control plane's health after a change must see the new static pods, not the old ones: Talos
// renders a component's pod from its config resource and stamps the resource's version on it
// (talos.dev/config-version), and the kubelet takes the new pod only on its next poll of Talos's
// static pod URL (every 20 s: Talos leaves httpCheckFrequency to the kubelet's default,
// kubelet_spec.go:284 at v1.13.0; Kubernetes v1.34.1 pkg/kubelet/apis/config/v1beta1/defaults.go:83-84).
// Until then the old pod stays, Ready on the same image when only a flag changed. So the wait is
// talosctl upgrade-k8s's (pkg/cluster/kubernetes/talos_managed.go:295-347): the version of the
// component's config resource, then the pod carrying it, Ready.

// noteChanging reads, before a change Talos applies without a reboot, the config versions of the
// components the change rewrites: Talos renders their resources after the apply returns, so the
// version read just after may still be the old one (talosctl waits for the resource's Updated event,
// talos_managed.go:334-345).
func (r *applyRun) noteChanging(ctx context.Context, active coreconfig.Provider) error {
	r.changing = nil

	names := talos.ChangedComponents(active, r.cfg)
	if len(names) == 0 {
		return nil
	}

	now, err := talos.ControlPlaneConfigs(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "control-plane-config", Detail: talos.Message(err), Look: talos.ConfigLook(r.n.IP, names[0])}
	}

	r.changing = map[string]string{}
	for _, name := range names {
		r.changing[name] = now[name].Version
	}

	report.Progress(r.n.Name, "the change renders %s anew: waiting for the new pods after it", strings.Join(names, ", "))

	return nil
}

// staticPodsWanted is what each control plane pod on the node must be now: rendered from the
// current version of its config resource (a new one, for a component this run's change rewrites)
// and running the config's image.
func (r *applyRun) staticPodsWanted(ctx context.Context, images map[string]string) (map[string]kube.PodWant, error) {
	configs, err := talos.ControlPlaneConfigs(ctx, r.c)
	if err != nil {
		return nil, report.Checkf("control-plane-config", talos.ConfigLook(r.n.IP, talos.APIServer), "%s", talos.Message(err))
	}

	want := map[string]kube.PodWant{}

	for _, name := range talos.ControlPlaneComponents {
		cc, ok := configs[name]
		if !ok {
			return nil, report.Checkf("control-plane-config", talos.ConfigLook(r.n.IP, name), "Talos has not rendered %s's config yet", name)
		}

		if before, changing := r.changing[name]; changing && cc.Version == before {
			return nil, report.Checkf("control-plane-config", talos.ConfigLook(r.n.IP, name),
				"Talos has not rendered %s's new config yet (its config resource is still at version %s)", name, before)
		}

		want[name] = kube.PodWant{Image: images[name], ConfigVersion: cc.Version, Disabled: !cc.Enabled}
	}

	return want, nil
}
