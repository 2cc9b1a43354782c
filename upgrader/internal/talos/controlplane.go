package talos

import (
	"context"
	"fmt"
	"reflect"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	configapi "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/wait"
)

// Talos's control plane static pods, in the order `talosctl upgrade-k8s` rolls them
// (pkg/cluster/kubernetes/talos_managed.go:147 at v1.13.0).
const (
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// ControlPlaneComponents are the static pods in that order.
var ControlPlaneComponents = []string{APIServer, ControllerManager, Scheduler}

// ConfigVersionAnnotation is what Talos stamps on each control plane static pod: the version of the
// component's config resource it was rendered from (internal/app/machined/pkg/controllers/k8s/
// control_plane_static_pod.go:467, 652 and 847 at v1.13.0; 462, 642 and 832 at v1.12.4;
// constants.AnnotationStaticPodConfigVersion). The kubelet copies it onto the mirror pod.
const ConfigVersionAnnotation = "talos.dev/config-version"

// ComponentConfig is a control plane component's config resource on a node
// (APIServerConfigs.kubernetes.talos.dev and its siblings, namespace controlplane).
type ComponentConfig struct {
	// Version is the resource's version: what the static pod rendered from it carries as
	// talos.dev/config-version.
	Version string
	Image   string
	// Enabled: false when the machine config disables the component (Talos renders no pod for it,
	// control_plane_static_pod.go's manageControllerManager and manageScheduler).
	Enabled bool
}

// ControlPlaneConfigs reads each component's config resource, as `talosctl upgrade-k8s` watches it
// (talos_managed.go:295-314: the version of the resource is the version the pod must carry). A
// component whose resource is absent (Talos has not rendered it yet) is missing from the map.
func ControlPlaneConfigs(ctx context.Context, c *client.Client) (map[string]ComponentConfig, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	out := map[string]ComponentConfig{}

	get := func(md *resource.Metadata) (resource.Resource, error) {
		r, err := c.COSI.Get(ctx, *md)
		if state.IsNotFoundError(err) || status.Code(err) == codes.NotFound {
			return nil, nil
		}

		return r, err
	}

	api, err := get(k8s.NewAPIServerConfig().Metadata())
	if err != nil {
		return nil, err
	}

	if r, ok := api.(*k8s.APIServerConfig); ok {
		out[APIServer] = ComponentConfig{Version: r.Metadata().Version().String(), Image: r.TypedSpec().Image, Enabled: true}
	}

	cm, err := get(k8s.NewControllerManagerConfig().Metadata())
	if err != nil {
		return nil, err
	}

	if r, ok := cm.(*k8s.ControllerManagerConfig); ok {
		out[ControllerManager] = ComponentConfig{Version: r.Metadata().Version().String(), Image: r.TypedSpec().Image, Enabled: r.TypedSpec().Enabled}
	}

	sch, err := get(k8s.NewSchedulerConfig().Metadata())
	if err != nil {
		return nil, err
	}

	if r, ok := sch.(*k8s.SchedulerConfig); ok {
		out[Scheduler] = ComponentConfig{Version: r.Metadata().Version().String(), Image: r.TypedSpec().Image, Enabled: r.TypedSpec().Enabled}
	}

	return out, nil
}

// componentSpecs are the specs Talos's transform controllers render from a control plane's machine
// config (internal/app/machined/pkg/controllers/k8s/control_plane.go:178-208, 225-249 and 266-282 at
// v1.13.0): COSI bumps a resource's version only when its spec changes (cosi-project/runtime v1.14.1
// pkg/state/wrap.go:52, UpdateWithConflicts returns early on resource.Equal).
func componentSpecs(cfg coreconfig.Provider) map[string]any {
	if cfg == nil || cfg.Cluster() == nil || cfg.Machine() == nil || !cfg.Machine().Type().IsControlPlane() {
		return nil
	}

	cl, m := cfg.Cluster(), cfg.Machine()

	cloudProvider := ""
	if cl.ExternalCloudProvider().Enabled() {
		cloudProvider = "external"
	}

	advertised := "$(POD_IP)"
	if m.Kubelet().SkipNodeRegistration() {
		advertised = ""
	}

	args := func(in map[string][]string) map[string]k8s.ArgValues {
		out := make(map[string]k8s.ArgValues, len(in))
		for k, v := range in {
			out[k] = k8s.ArgValues{Values: v}
		}

		return out
	}

	volumes := func(in []configapi.VolumeMount) []k8s.ExtraVolume {
		var out []k8s.ExtraVolume
		for _, v := range in {
			out = append(out, k8s.ExtraVolume{Name: v.Name(), HostPath: v.HostPath(), MountPath: v.MountPath(), ReadOnly: v.ReadOnly()})
		}

		return out
	}

	resources := func(r configapi.Resources) k8s.Resources {
		// control_plane.go:449-474, convertResources.
		var limits map[string]string
		if r.CPULimits() != "" || r.MemoryLimits() != "" {
			limits = map[string]string{}
			if r.CPULimits() != "" {
				limits["cpu"] = r.CPULimits()
			}

			if r.MemoryLimits() != "" {
				limits["memory"] = r.MemoryLimits()
			}
		}

		return k8s.Resources{Requests: map[string]string{"cpu": r.CPURequests(), "memory": r.MemoryRequests()}, Limits: limits}
	}

	return map[string]any{
		APIServer: k8s.APIServerConfigSpec{
			Image:                cl.APIServer().Image(),
			CloudProvider:        cloudProvider,
			ControlPlaneEndpoint: cl.Endpoint().String(),
			EtcdServers:          []string{"https://127.0.0.1:2379"},
			LocalPort:            cl.LocalAPIServerPort(),
			ServiceCIDRs:         cl.Network().ServiceCIDRs(),
			ExtraArgs:            args(cl.APIServer().ExtraArgs()),
			ExtraVolumes:         volumes(cl.APIServer().ExtraVolumes()),
			EnvironmentVariables: cl.APIServer().Env(),
			AdvertisedAddress:    advertised,
			Resources:            resources(cl.APIServer().Resources()),
		},
		ControllerManager: k8s.ControllerManagerConfigSpec{
			Enabled:              !m.Controlplane().ControllerManager().Disabled(),
			Image:                cl.ControllerManager().Image(),
			CloudProvider:        cloudProvider,
			PodCIDRs:             cl.Network().PodCIDRs(),
			ServiceCIDRs:         cl.Network().ServiceCIDRs(),
			ExtraArgs:            args(cl.ControllerManager().ExtraArgs()),
			ExtraVolumes:         volumes(cl.ControllerManager().ExtraVolumes()),
			EnvironmentVariables: cl.ControllerManager().Env(),
			Resources:            resources(cl.ControllerManager().Resources()),
		},
		Scheduler: k8s.SchedulerConfigSpec{
			Enabled:              !m.Controlplane().Scheduler().Disabled(),
			Image:                cl.Scheduler().Image(),
			ExtraArgs:            args(cl.Scheduler().ExtraArgs()),
			ExtraVolumes:         volumes(cl.Scheduler().ExtraVolumes()),
			EnvironmentVariables: cl.Scheduler().Env(),
			Resources:            resources(cl.Scheduler().Resources()),
			Config:               cl.Scheduler().Config(),
		},
	}
}

// ChangedComponents are the control plane components whose config resource Talos rewrites (and
// whose static pod it renders anew, under a new talos.dev/config-version) when the node's config goes
// from before to after. The fields compared are the ones the transform controllers read; a change
// elsewhere (the admission control or audit policy files, certificates) restarts the API server
// under other annotations (talos.dev/config-file-version, talos.dev/secrets-version), which no wait
// here reads.
func ChangedComponents(before, after coreconfig.Provider) []string {
	a, b := componentSpecs(before), componentSpecs(after)

	var out []string

	for _, name := range ControlPlaneComponents {
		if b == nil {
			continue
		}

		if a == nil || !reflect.DeepEqual(a[name], b[name]) {
			out = append(out, name)
		}
	}

	return out
}

// ConfigLook is how a person looks at a component's config resource and its static pod.
func ConfigLook(ip, component string) string {
	return fmt.Sprintf("talosctl -n %s get %s -o yaml; talosctl -n %s get staticpodstatus", ip, configType(component), ip)
}

func configType(component string) string {
	switch component {
	case ControllerManager:
		return "controllermanagerconfigs"
	case Scheduler:
		return "schedulerconfigs"
	}

	return "apiserverconfigs"
}
