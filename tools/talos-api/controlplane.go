package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/crypto/x509"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	configapi "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/secrets"
)

// A control plane's static pods, as Talos renders them:
//
//   - the transform controllers render each component's config resource (APIServerConfig,
//     ControllerManagerConfig, SchedulerConfig) and the API server's config files' (AdmissionControlConfig,
//     AuditPolicyConfig, AuthorizationConfig), all in namespace controlplane, from the active machine
//     config (internal/app/machined/pkg/controllers/k8s/control_plane.go:58-282 at v1.13.0), and
//     secrets.KubernetesRoot (secrets/root.go:78-145); COSI bumps a resource's version only when its
//     spec changes (cosi-project/runtime v1.14.1 pkg/state/wrap.go:52);
//   - KubernetesController regenerates secrets.Kubernetes (new certificates, so a new version) each time
//     KubernetesRoot changes (secrets/kubernetes.go:75-115), and RenderSecretsStaticPodController
//     publishes that version as SecretsStatus.Version (render_secrets_static_pod.go:330);
//   - RenderConfigsStaticPodController writes the config files and publishes the four resources'
//     versions strung together as ConfigStatus.Version (render_config_static_pods.go:221-227 at v1.13.0,
//     223-226 at v1.12.4);
//   - ControlPlaneStaticPodController, once etcd is healthy (control_plane_static_pod.go:111-125),
//     renders a StaticPod resource per enabled component (namespace k8s), stamped with
//     talos.dev/secrets-version (all three), talos.dev/config-file-version (the API server) and
//     talos.dev/config-version, its config resource's version (lines 464-467, 650-652, 845-847), and
//     removes the pod of a disabled one (lines 198-217);
//   - Talos serves those pods at its static pod URL, which the kubelet polls (kubelet.go here).
//
// The controllers run after ApplyConfiguration has answered; a node's renderDelayMs scripts how long
// after the transform controllers run (0: at once); the static pod controller runs on its own, as
// soon as etcd is healthy (staticPodController).

const (
	kubeAPIServer         = "kube-apiserver"
	kubeControllerManager = "kube-controller-manager"
	kubeScheduler         = "kube-scheduler"
	configVersionKey      = "talos.dev/config-version"
	secretsVersionKey     = "talos.dev/secrets-version"
	configFileVersionKey  = "talos.dev/config-file-version"
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

	admission := k8s.NewAdmissionControlConfig()
	for _, p := range cl.APIServer().AdmissionControl() {
		admission.TypedSpec().Config = append(admission.TypedSpec().Config, k8s.AdmissionPluginSpec{Name: p.Name(), Configuration: p.Configuration()})
	}

	audit := k8s.NewAuditPolicyConfig()
	audit.TypedSpec().Config = cl.APIServer().AuditPolicy()

	return []resource.Resource{api, cm, sch, admission, audit, authorizationConfig(cl), kubernetesRoot(cfg)}
}

// authorizationConfig is ControlPlaneAuthorizationController's (control_plane.go:104-160 at v1.13.0):
// the API server's image, and its authorizers from Kubernetes 1.29 on (the defaults, else the ones set
// with Node and RBAC put first when missing).
func authorizationConfig(cl configapi.ClusterConfig) *k8s.AuthorizationConfig {
	res := k8s.NewAuthorizationConfig()
	res.TypedSpec().Image = cl.APIServer().Image()

	if minor := imageMinor(cl.APIServer().Image()); minor >= 0 && minor < 29 {
		return res
	}

	if cl.APIServer().AuthorizationConfig() == nil {
		res.TypedSpec().Config = v1alpha1.APIServerDefaultAuthorizationConfigAuthorizers

		return res
	}

	var authorizers []k8s.AuthorizationAuthorizersSpec
	for _, a := range cl.APIServer().AuthorizationConfig() {
		authorizers = append(authorizers, k8s.AuthorizationAuthorizersSpec{Type: a.Type(), Name: a.Name(), Webhook: a.Webhook()})
	}

	has := func(kind string) bool {
		return slices.ContainsFunc(authorizers, func(a k8s.AuthorizationAuthorizersSpec) bool { return a.Type == kind })
	}

	if !has("Node") {
		authorizers = slices.Insert(authorizers, 0, k8s.AuthorizationAuthorizersSpec{Type: "Node", Name: "node"})
	}

	if !has("RBAC") {
		authorizers = slices.Insert(authorizers, 1, k8s.AuthorizationAuthorizersSpec{Type: "RBAC", Name: "rbac"})
	}

	res.TypedSpec().Config = authorizers

	return res
}

// imageMinor is a Kubernetes image's minor version (-1 when its tag names none).
func imageMinor(image string) int {
	tag := imageTag(image)
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)

	if len(parts) < 2 {
		return -1
	}

	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return -1
	}

	return minor
}

// kubernetesRoot is RootKubernetesController's secrets.KubernetesRoot (secrets/root.go:78-145 at v1.13.0).
func kubernetesRoot(cfg coreconfig.Provider) *secrets.KubernetesRoot {
	cl, m := cfg.Cluster(), cfg.Machine()
	res := secrets.NewKubernetesRoot(secrets.KubernetesRootID)
	spec := res.TypedSpec()

	local := fmt.Sprintf("https://localhost:%d", cl.LocalAPIServerPort())
	if m.Features().KubePrism().Enabled() {
		local = fmt.Sprintf("https://127.0.0.1:%d", m.Features().KubePrism().Port())
	}

	spec.LocalEndpoint, _ = url.Parse(local)           //nolint:errcheck
	spec.APIServerIPs, _ = cl.Network().APIServerIPs() //nolint:errcheck
	spec.Name, spec.Endpoint, spec.CertSANs, spec.DNSDomain = cl.Name(), cl.Endpoint(), cl.CertSANs(), cl.Network().DNSDomain()
	spec.AggregatorCA, spec.IssuingCA, spec.AcceptedCAs = cl.AggregatorCA(), cl.IssuingCA(), cl.AcceptedCAs()

	if spec.IssuingCA != nil {
		spec.AcceptedCAs = append(slices.Clone(spec.AcceptedCAs), &x509.PEMEncodedCertificate{Crt: spec.IssuingCA.Crt})

		if len(spec.IssuingCA.Key) == 0 {
			spec.IssuingCA = nil
		}
	}

	spec.ServiceAccount = cl.ServiceAccount()
	spec.AESCBCEncryptionSecret, spec.SecretboxEncryptionSecret = cl.AESCBCEncryptionSecret(), cl.SecretboxEncryptionSecret()
	spec.BootstrapTokenID, spec.BootstrapTokenSecret = cl.Token().ID(), cl.Token().Secret()

	return res
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
	rootChanged := false

	for _, r := range componentConfigs(cfg) {
		cur, err := n.st.Get(ctx, r.Metadata())

		switch {
		case state.IsNotFoundError(err):
			err = n.st.Create(ctx, r)
			rootChanged = rootChanged || r.Metadata().Type() == secrets.KubernetesRootType
		case err == nil && !reflect.DeepEqual(cur.Spec(), r.Spec()):
			r.Metadata().SetVersion(cur.Metadata().Version())
			err = n.st.Update(ctx, r)
			rootChanged = rootChanged || r.Metadata().Type() == secrets.KubernetesRootType
		}

		if err != nil {
			log.Printf("%s: rendering %s: %s", n.name, r.Metadata().Type(), err)
		}
	}

	if rootChanged {
		n.renderSecrets()
	}

	n.renderConfigStatus()
}

// renderSecrets is KubernetesController regenerating secrets.Kubernetes (new certificates: a new
// spec, a new version) and RenderSecretsStaticPodController publishing its version.
func (n *Node) renderSecrets() {
	ctx := context.Background()
	k := secrets.NewKubernetes()

	version := 1
	if cur, err := n.st.Get(ctx, k.Metadata()); err == nil {
		version = int(cur.Metadata().Version().Value()) + 1 //nolint:gosec
	}

	// The certificates are made anew: here a text that differs each time stands for them.
	k.TypedSpec().AdminKubeconfig = fmt.Sprintf("# certificates generated anew (%d)", version)

	if err := put(n.st, k); err != nil {
		log.Printf("%s: rendering %s: %s", n.name, k.Metadata().Type(), err)

		return
	}

	cur, err := n.st.Get(ctx, k.Metadata())
	if err != nil {
		return
	}

	st := k8s.NewSecretsStatus(k8s.ControlPlaneNamespaceName, k8s.StaticPodSecretsStaticPodID)
	*st.TypedSpec() = k8s.SecretsStatusSpec{Ready: true, Version: cur.Metadata().Version().String()}
	putIfChanged(n.st, st)
}

// renderConfigStatus is RenderConfigsStaticPodController's ConfigStatus: the versions of the API
// server's config files' resources and the scheduler's, strung together.
func (n *Node) renderConfigStatus() {
	ctx := context.Background()
	version := ""

	for _, md := range []*resource.Metadata{
		k8s.NewAdmissionControlConfig().Metadata(), k8s.NewAuditPolicyConfig().Metadata(), k8s.NewAuthorizationConfig().Metadata(), k8s.NewSchedulerConfig().Metadata(),
	} {
		r, err := n.st.Get(ctx, *md)
		if err != nil {
			return // not rendered yet: the controller waits for all four
		}

		version += r.Metadata().Version().String()
	}

	st := k8s.NewConfigStatus(k8s.ControlPlaneNamespaceName, k8s.ConfigStatusStaticPodID)
	*st.TypedSpec() = k8s.ConfigStatusSpec{Ready: true, Version: version}
	putIfChanged(n.st, st)
}

// putIfChanged creates a resource, or updates it when its spec changed (a new version only then).
func putIfChanged(st state.State, r resource.Resource) {
	ctx := context.Background()

	cur, err := st.Get(ctx, r.Metadata())

	switch {
	case state.IsNotFoundError(err):
		err = st.Create(ctx, r)
	case err == nil && !reflect.DeepEqual(cur.Spec(), r.Spec()):
		r.Metadata().SetVersion(cur.Metadata().Version())
		err = st.Update(ctx, r)
	}

	if err != nil {
		log.Printf("writing %s: %s", r.Metadata().Type(), err)
	}
}

// staticPodInterval is how often the stand-in's static pod controller looks (Talos's reacts to events).
const staticPodInterval = 50 * time.Millisecond

// startStaticPodController runs ControlPlaneStaticPodController for this boot (called with the
// cluster's lock held).
func (n *Node) startStaticPodController() {
	if !n.controlPlane() || n.maintenance {
		return
	}

	gen := n.gen

	go func() {
		for {
			time.Sleep(staticPodInterval)

			n.c.mu.Lock()
			if n.gen != gen || !n.up {
				n.c.mu.Unlock()

				return
			}

			// Once etcd is healthy (control_plane_static_pod.go:111-125): this node's member runs and the
			// cluster has quorum.
			if n.etcdData && n.c.quorum() {
				n.renderStaticPods()
			}
			n.c.mu.Unlock()
		}
	}()
}

// renderStaticPods renders a StaticPod resource for each enabled component from its config
// resource, the secrets' and the config files' versions, as ControlPlaneStaticPodController renders
// it (keeping what the tests read: name, labels, the annotations, image, the extra args as flags), and
// removes the pod of a disabled component. Called with the cluster's lock held.
func (n *Node) renderStaticPods() {
	ctx := context.Background()

	secretsStatus, err1 := n.st.Get(ctx, k8s.NewSecretsStatus(k8s.ControlPlaneNamespaceName, k8s.StaticPodSecretsStaticPodID).Metadata())
	configStatus, err2 := n.st.Get(ctx, k8s.NewConfigStatus(k8s.ControlPlaneNamespaceName, k8s.ConfigStatusStaticPodID).Metadata())

	if err1 != nil || err2 != nil {
		return // lines 128-157: nothing before both statuses exist
	}

	secretsVersion := secretsStatus.Spec().(*k8s.SecretsStatusSpec).Version
	configFileVersion := configStatus.Spec().(*k8s.ConfigStatusSpec).Version

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

		name := string(r.Metadata().ID())
		pod := k8s.NewStaticPod(k8s.NamespaceName, name)

		if !enabled {
			if err := n.st.Destroy(ctx, pod.Metadata()); err != nil && !state.IsNotFoundError(err) {
				log.Printf("%s: removing the %s pod: %s", n.name, name, err)
			}

			continue
		}

		command := []string{"/usr/local/bin/" + name}

		keys := make([]string, 0, len(args))
		for k := range args {
			keys = append(keys, k)
		}

		sort.Strings(keys)

		for _, k := range keys {
			command = append(command, fmt.Sprintf("--%s=%s", k, strings.Join(args[k].Values, ",")))
		}

		annotations := map[string]any{secretsVersionKey: secretsVersion, configVersionKey: r.Metadata().Version().String()}
		if name == kubeAPIServer {
			annotations[configFileVersionKey] = configFileVersion
		}

		// As k8sadapter's SetPod stores it: the pod as JSON types (the resource travels as a structpb.Struct).
		pod.TypedSpec().Pod = jsonMap(map[string]any{
			"apiVersion": "v1",
			"kind":       "Pod",
			"metadata": map[string]any{
				"name":        name,
				"namespace":   "kube-system",
				"annotations": annotations,
				"labels":      map[string]any{"tier": "control-plane", "k8s-app": name, "component": name},
			},
			"spec": map[string]any{
				"hostNetwork":       true,
				"priorityClassName": "system-cluster-critical",
				"containers":        []any{map[string]any{"name": name, "image": image, "command": command}},
			},
		})

		putIfChanged(n.st, pod)
	}
}

// jsonMap is v as JSON's types (a round trip through encoding/json).
func jsonMap(v map[string]any) map[string]any {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}

	var out map[string]any
	if json.Unmarshal(raw, &out) != nil {
		return nil
	}

	return out
}

// staticPods are the pods Talos serves the kubelet now, by name: its StaticPod resources (none in
// maintenance mode). Called with the cluster's lock held.
func (n *Node) staticPods() map[string]map[string]any {
	if !n.controlPlane() || n.maintenance || n.st == nil {
		return nil
	}

	list, err := n.st.List(context.Background(), resource.NewMetadata(k8s.NamespaceName, k8s.StaticPodType, "", resource.VersionUndefined))
	if err != nil {
		return nil
	}

	out := map[string]map[string]any{}

	for _, r := range list.Items {
		if pod := jsonMap(r.Spec().(*k8s.StaticPodSpec).Pod); pod != nil { // a copy: the kubelet changes what it takes
			out[string(r.Metadata().ID())] = pod
		}
	}

	return out
}
