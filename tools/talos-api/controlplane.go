package main

import (
	"context"
	"fmt"
	"log"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	configapi "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
)

// A control plane's static pods, as Talos renders them:
//
//   - the transform controllers render each component's config resource (APIServerConfig,
//     ControllerManagerConfig, SchedulerConfig in namespace controlplane) from the active machine
//     config (internal/app/machined/pkg/controllers/k8s/control_plane.go:178-282 at v1.13.0), and COSI
//     bumps a resource's version only when its spec changes (cosi-project/runtime v1.14.1
//     pkg/state/wrap.go:52);
//   - ControlPlaneStaticPodController renders the pods from them, stamping each with its config
//     resource's version as talos.dev/config-version (control_plane_static_pod.go:461-468, 647-653,
//     837-848; constants.AnnotationStaticPodConfigVersion), once etcd is healthy (line 125);
//   - Talos serves the pods at its static pod URL, which the kubelet polls (kubelet.go here).
//
// The controllers run after ApplyConfiguration has answered; a node's renderDelayMs scripts how long
// after (0: at once).

const (
	kubeAPIServer         = "kube-apiserver"
	kubeControllerManager = "kube-controller-manager"
	kubeScheduler         = "kube-scheduler"
	configVersionKey      = "talos.dev/config-version"
)

var controlPlaneComponents = []string{kubeAPIServer, kubeControllerManager, kubeScheduler}

// componentConfigs are the config resources the transform controllers render from a control
// plane's active config (control_plane.go:178-208, 225-249, 266-282); none on a worker
// (controlplaneMapFunc, lines 40-56).
func componentConfigs(cfg coreconfig.Provider) []resource.Resource {
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

	api := k8s.NewAPIServerConfig()
	*api.TypedSpec() = k8s.APIServerConfigSpec{
		Image:                cl.APIServer().Image(),
		CloudProvider:        cloudProvider,
		ControlPlaneEndpoint: cl.Endpoint().String(),
		EtcdServers:          []string{"https://127.0.0.1:2379"},
		LocalPort:            cl.LocalAPIServerPort(),
		ServiceCIDRs:         cl.Network().ServiceCIDRs(),
		ExtraArgs:            argValues(cl.APIServer().ExtraArgs()),
		ExtraVolumes:         extraVolumes(cl.APIServer().ExtraVolumes()),
		EnvironmentVariables: cl.APIServer().Env(),
		AdvertisedAddress:    advertised,
		Resources:            podResources(cl.APIServer().Resources()),
	}

	cm := k8s.NewControllerManagerConfig()
	*cm.TypedSpec() = k8s.ControllerManagerConfigSpec{
		Enabled:              !m.Controlplane().ControllerManager().Disabled(),
		Image:                cl.ControllerManager().Image(),
		CloudProvider:        cloudProvider,
		PodCIDRs:             cl.Network().PodCIDRs(),
		ServiceCIDRs:         cl.Network().ServiceCIDRs(),
		ExtraArgs:            argValues(cl.ControllerManager().ExtraArgs()),
		ExtraVolumes:         extraVolumes(cl.ControllerManager().ExtraVolumes()),
		EnvironmentVariables: cl.ControllerManager().Env(),
		Resources:            podResources(cl.ControllerManager().Resources()),
	}

	sch := k8s.NewSchedulerConfig()
	*sch.TypedSpec() = k8s.SchedulerConfigSpec{
		Enabled:              !m.Controlplane().Scheduler().Disabled(),
		Image:                cl.Scheduler().Image(),
		ExtraArgs:            argValues(cl.Scheduler().ExtraArgs()),
		ExtraVolumes:         extraVolumes(cl.Scheduler().ExtraVolumes()),
		EnvironmentVariables: cl.Scheduler().Env(),
		Resources:            podResources(cl.Scheduler().Resources()),
		Config:               cl.Scheduler().Config(),
	}

	return []resource.Resource{api, cm, sch}
}

func argValues(in map[string][]string) map[string]k8s.ArgValues {
	out := make(map[string]k8s.ArgValues, len(in))
	for k, v := range in {
		out[k] = k8s.ArgValues{Values: v}
	}

	return out
}

// extraVolumes is control_plane.go:438-447, convertVolumes.
func extraVolumes(in []configapi.VolumeMount) []k8s.ExtraVolume {
	var out []k8s.ExtraVolume
	for _, v := range in {
		out = append(out, k8s.ExtraVolume{Name: v.Name(), HostPath: v.HostPath(), MountPath: v.MountPath(), ReadOnly: v.ReadOnly()})
	}

	return out
}

// podResources is control_plane.go:449-474, convertResources.
func podResources(r configapi.Resources) k8s.Resources {
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

// renderControlPlane runs the transform controllers on the node's active config: each config
// resource is created, or updated (a new version) only when its spec changed. Called with the
// cluster's lock held; after a scripted delay it runs from a timer of this boot only.
func (n *Node) renderControlPlane() {
	if d := n.spec.RenderDelayMs; d > 0 {
		gen, cfg := n.gen, n.active

		time.AfterFunc(time.Duration(d)*time.Millisecond, func() {
			n.c.mu.Lock()
			defer n.c.mu.Unlock()

			if n.gen == gen && n.up && n.active == cfg {
				n.writeControlPlane(cfg)
			}
		})

		return
	}

	n.writeControlPlane(n.active)
}

func (n *Node) writeControlPlane(cfg coreconfig.Provider) {
	ctx := context.Background()

	for _, r := range componentConfigs(cfg) {
		cur, err := n.st.Get(ctx, r.Metadata())

		switch {
		case state.IsNotFoundError(err):
			err = n.st.Create(ctx, r)
		case err == nil && !reflect.DeepEqual(cur.Spec(), r.Spec()):
			r.Metadata().SetVersion(cur.Metadata().Version())
			err = n.st.Update(ctx, r)
		}

		if err != nil {
			log.Printf("%s: rendering %s: %s", n.name, r.Metadata().Type(), err)
		}
	}
}

// staticPods are the pods Talos serves the kubelet now, by name: rendered from the config resources
// as ControlPlaneStaticPodController renders them, keeping what the tests read (name, labels, the
// config-version annotation, image, the extra args as flags); none before etcd is healthy, and none
// for a disabled component. Called with the cluster's lock held.
func (n *Node) staticPods() map[string]map[string]any {
	if !n.controlPlane() || n.maintenance || !n.etcdData || !n.c.quorum() {
		return nil
	}

	out := map[string]map[string]any{}
	ctx := context.Background()

	for _, md := range []*resource.Metadata{k8s.NewAPIServerConfig().Metadata(), k8s.NewControllerManagerConfig().Metadata(), k8s.NewSchedulerConfig().Metadata()} {
		r, err := n.st.Get(ctx, *md)
		if err != nil {
			continue
		}

		var (
			image   string
			args    map[string]k8s.ArgValues
			enabled = true
		)

		switch s := r.Spec().(type) {
		case *k8s.APIServerConfigSpec:
			image, args = s.Image, s.ExtraArgs
		case *k8s.ControllerManagerConfigSpec:
			image, args, enabled = s.Image, s.ExtraArgs, s.Enabled
		case *k8s.SchedulerConfigSpec:
			image, args, enabled = s.Image, s.ExtraArgs, s.Enabled
		}

		if !enabled {
			continue
		}

		name := string(r.Metadata().ID())
		command := []string{"/usr/local/bin/" + name}

		keys := make([]string, 0, len(args))
		for k := range args {
			keys = append(keys, k)
		}

		sort.Strings(keys)

		for _, k := range keys {
			command = append(command, fmt.Sprintf("--%s=%s", k, strings.Join(args[k].Values, ",")))
		}

		out[name] = map[string]any{
			"apiVersion": "v1",
			"kind":       "Pod",
			"metadata": map[string]any{
				"name":        name,
				"namespace":   "kube-system",
				"annotations": map[string]any{configVersionKey: r.Metadata().Version().String()},
				"labels":      map[string]any{"tier": "control-plane", "k8s-app": name, "component": name},
			},
			"spec": map[string]any{
				"hostNetwork":       true,
				"priorityClassName": "system-cluster-critical",
				"containers":        []any{map[string]any{"name": name, "image": image, "command": command}},
			},
		}
	}

	return out
}
