package talos

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/client"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	configapi "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/resources/k8s"
	"github.com/siderolabs/talos/pkg/machinery/resources/secrets"

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

// The annotations Talos stamps on each control plane static pod (ControlPlaneStaticPodController,
// internal/app/machined/pkg/controllers/k8s/control_plane_static_pod.go:464-468, 650-653 and 845-848 at
// v1.13.0; 459-462, 640-642 and 830-832 at v1.12.4). The kubelet copies them onto the mirror pod, and
// its pod hash covers every annotation (Kubernetes v1.34.1 pkg/kubelet/config/common.go:60-91): a new
// value of any of them is a new pod, a restart.
const (
	// ConfigVersionAnnotation is the version of the component's config resource (APIServerConfig and
	// its siblings) the pod was rendered from.
	ConfigVersionAnnotation = "talos.dev/config-version"
	// SecretsVersionAnnotation is the version of the secrets.Kubernetes resource (SecretsStatus.Version,
	// render_secrets_static_pod.go:330 at both tags): on all three pods.
	SecretsVersionAnnotation = "talos.dev/secrets-version"
	// ConfigFileVersionAnnotation is ConfigStatus.Version, the versions of AdmissionControlConfig,
	// AuditPolicyConfig, AuthorizationConfig and SchedulerConfig strung together
	// (render_config_static_pods.go:221-227 at v1.13.0, 223-226 at v1.12.4): on the API server's pod
	// alone, so a change of the scheduler's config restarts the API server too.
	ConfigFileVersionAnnotation = "talos.dev/config-file-version"
)

// annotationOrder is how messages list a pod's annotations.
var annotationOrder = []string{ConfigVersionAnnotation, ConfigFileVersionAnnotation, SecretsVersionAnnotation}

// ServedPod is a control plane static pod as Talos serves it to the kubelet now: the
// StaticPods.kubernetes.talos.dev resource of that ID (namespace k8s) ControlPlaneStaticPodController
// writes (control_plane_static_pod.go:455-460 at v1.13.0), and removes when the component is disabled.
type ServedPod struct {
	Image string
	// Annotations are its talos.dev/* annotations: what its mirror pod carries once the kubelet runs it.
	Annotations map[string]string
}

// Same: the same pod (the annotations name every input it is rendered from).
func (p ServedPod) Same(o ServedPod) bool {
	return p.Image == o.Image && reflect.DeepEqual(p.Annotations, o.Annotations)
}

// Describe lists the annotations in a fixed order, as messages show them.
func (p ServedPod) Describe() string {
	var parts []string

	for _, k := range annotationOrder {
		if v, ok := p.Annotations[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}

	return strings.Join(parts, ", ")
}

// ServedPods are the control plane static pods Talos serves on the node now, by component: exactly
// the ones the kubelet runs from its static pod URL (none before etcd is healthy, none for a
// disabled component).
func ServedPods(ctx context.Context, c *client.Client) (map[string]ServedPod, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	list, err := safe.StateListAll[*k8s.StaticPod](ctx, c.COSI)
	if err != nil {
		return nil, err
	}

	out := map[string]ServedPod{}

	for r := range list.All() {
		id := r.Metadata().ID()
		if !slices.Contains(ControlPlaneComponents, id) {
			continue // a pod of machine.pods, not the control plane's
		}

		out[id] = servedPod(r.TypedSpec().Pod)
	}

	return out, nil
}

// servedPod reads the fields of a static pod's definition (a marshalled v1.Pod, as a map) the waits use.
func servedPod(pod map[string]any) ServedPod {
	out := ServedPod{Annotations: map[string]string{}}

	if meta, ok := pod["metadata"].(map[string]any); ok {
		if annotations, ok := meta["annotations"].(map[string]any); ok {
			for k, v := range annotations {
				if s, ok := v.(string); ok && strings.HasPrefix(k, "talos.dev/") {
					out.Annotations[k] = s
				}
			}
		}
	}

	if spec, ok := pod["spec"].(map[string]any); ok {
		if containers, ok := spec["containers"].([]any); ok && len(containers) > 0 {
			if c, ok := containers[0].(map[string]any); ok {
				out.Image, _ = c["image"].(string) //nolint:errcheck
			}
		}
	}

	return out
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

// fileSpecs are the specs ConfigStatus.Version strings together (the API server's config files and
// the scheduler's), as the transform controllers render them (control_plane.go:58-160 at v1.13.0, the
// same at v1.12.4; the scheduler's from componentSpecs).
func fileSpecs(cfg coreconfig.Provider, specs map[string]any) []any {
	api := cfg.Cluster().APIServer()

	admission := k8s.AdmissionControlConfigSpec{}
	for _, p := range api.AdmissionControl() {
		admission.Config = append(admission.Config, k8s.AdmissionPluginSpec{Name: p.Name(), Configuration: p.Configuration()})
	}

	authorization := k8s.AuthorizationConfigSpec{Image: api.Image()}

	// control_plane.go:120-157: the authorizers only from Kubernetes 1.29 on (compatibility's
	// KubeAPIServerSupportsAuthorizationConfigFile), the default ones when none is set, else the ones set
	// with Node and RBAC put first when missing.
	if authorizationFile(api.Image()) {
		if api.AuthorizationConfig() == nil {
			authorization.Config = v1alpha1.APIServerDefaultAuthorizationConfigAuthorizers
		} else {
			var authorizers []k8s.AuthorizationAuthorizersSpec
			for _, a := range api.AuthorizationConfig() {
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

			authorization.Config = authorizers
		}
	}

	return []any{admission, k8s.AuditPolicyConfigSpec{Config: api.AuditPolicy()}, authorization, specs[Scheduler]}
}

// authorizationFile: go-kubernetes v0.2.36 compatibility.Version.KubeAPIServerSupportsAuthorizationConfigFile
// (features.go:59-63), 1.29 or later; an image without a version tag counts as recent.
func authorizationFile(image string) bool {
	tag := image
	if i := strings.Index(tag, "@"); i >= 0 {
		tag = tag[:i]
	}

	i := strings.LastIndex(tag, ":")
	if i <= strings.LastIndex(tag, "/") {
		return true
	}

	parts := strings.SplitN(strings.TrimPrefix(tag[i+1:], "v"), ".", 3)
	if len(parts) < 2 {
		return true
	}

	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])

	return err1 != nil || err2 != nil || major > 1 || (major == 1 && minor >= 29)
}

// kubernetesRoot is the secrets.KubernetesRoot spec RootKubernetesController renders from a control
// plane's config (internal/app/machined/pkg/controllers/secrets/root.go:78-145 at v1.13.0, the same at
// v1.12.4). KubernetesController regenerates secrets.Kubernetes (new certificates: a new version) each
// time it changes (secrets/kubernetes.go:75-115), and that version is every pod's
// talos.dev/secrets-version.
func kubernetesRoot(cfg coreconfig.Provider) secrets.KubernetesRootSpec {
	cl, m := cfg.Cluster(), cfg.Machine()

	local := fmt.Sprintf("https://localhost:%d", cl.LocalAPIServerPort())
	if m.Features().KubePrism().Enabled() {
		local = fmt.Sprintf("https://127.0.0.1:%d", m.Features().KubePrism().Port())
	}

	localEndpoint, _ := url.Parse(local)           //nolint:errcheck // a URL made here
	apiServerIPs, _ := cl.Network().APIServerIPs() //nolint:errcheck // the same error for both configs compares equal

	root := secrets.KubernetesRootSpec{
		Name:                      cl.Name(),
		Endpoint:                  cl.Endpoint(),
		LocalEndpoint:             localEndpoint,
		CertSANs:                  cl.CertSANs(),
		DNSDomain:                 cl.Network().DNSDomain(),
		APIServerIPs:              apiServerIPs,
		AggregatorCA:              cl.AggregatorCA(),
		IssuingCA:                 cl.IssuingCA(),
		AcceptedCAs:               cl.AcceptedCAs(),
		ServiceAccount:            cl.ServiceAccount(),
		AESCBCEncryptionSecret:    cl.AESCBCEncryptionSecret(),
		SecretboxEncryptionSecret: cl.SecretboxEncryptionSecret(),
		BootstrapTokenID:          cl.Token().ID(),
		BootstrapTokenSecret:      cl.Token().Secret(),
	}

	if root.IssuingCA != nil {
		root.AcceptedCAs = append(slices.Clone(root.AcceptedCAs), &x509.PEMEncodedCertificate{Crt: root.IssuingCA.Crt})

		if len(root.IssuingCA.Key) == 0 {
			root.IssuingCA = nil
		}
	}

	return root
}

// Restarts are the control plane pods Talos renders anew when the node's config goes from before to
// after, each with the annotations that move: its config resource's version (config-version), the
// API server's config files (config-file-version: the admission, audit and authorization configs, and
// the scheduler's), the Kubernetes secrets (secrets-version, all three). The specs compared are the
// ones the transform controllers read, each as Talos renders it, and COSI bumps a resource's version
// only when its spec changes (cosi-project/runtime v1.14.1 pkg/state/wrap.go:52): a pod named here is
// sure to restart. A pod's restart that this misses (a change Talos renders from an input not modelled
// here) is still waited for: the health wait takes the pods Talos serves once they stop changing.
func Restarts(before, after coreconfig.Provider) map[string][]string {
	b := componentSpecs(after)
	if b == nil {
		return nil
	}

	out := map[string][]string{}
	a := componentSpecs(before)

	for _, name := range ControlPlaneComponents {
		if a == nil || !reflect.DeepEqual(a[name], b[name]) {
			out[name] = append(out[name], ConfigVersionAnnotation)
		}
	}

	if a == nil || !reflect.DeepEqual(fileSpecs(before, a), fileSpecs(after, b)) {
		out[APIServer] = append(out[APIServer], ConfigFileVersionAnnotation)
	}

	if a == nil || !reflect.DeepEqual(kubernetesRoot(before), kubernetesRoot(after)) {
		for _, name := range ControlPlaneComponents {
			out[name] = append(out[name], SecretsVersionAnnotation)
		}
	}

	if len(out) == 0 {
		return nil
	}

	return out
}

// RestartNames are the components Restarts names, in rollout order.
func RestartNames(restarts map[string][]string) []string {
	var out []string

	for _, name := range ControlPlaneComponents {
		if _, ok := restarts[name]; ok {
			out = append(out, name)
		}
	}

	return out
}

// ServedLook is how a person looks at the static pods Talos serves on a node, and what the kubelet
// reports of them.
func ServedLook(ip string) string {
	return fmt.Sprintf("talosctl -n %s get staticpods -o yaml; talosctl -n %s get staticpodstatus", ip, ip)
}
