package talos

import (
	"reflect"
	"strings"
	"testing"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
)

// base is the part of a control plane's config the transform controllers read.
const base = `version: v1alpha1
machine:
  type: controlplane
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.34.1
  install:
    image: ghcr.io/siderolabs/installer:v1.13.0
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
  network:
    podSubnets: [10.244.0.0/16]
    serviceSubnets: [10.96.0.0/12]
  apiServer:
    image: registry.k8s.io/kube-apiserver:v1.34.1
    extraArgs:
      bind-address: 0.0.0.0
  controllerManager:
    image: registry.k8s.io/kube-controller-manager:v1.34.1
  scheduler:
    image: registry.k8s.io/kube-scheduler:v1.34.1
  proxy:
    image: registry.k8s.io/kube-proxy:v1.34.1
`

// edit replaces each old text of a config with the new, all of it once at least.
func edit(t *testing.T, config string, pairs ...string) string {
	t.Helper()

	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(config, pairs[i]) {
			t.Fatalf("%q is not in the config", pairs[i])
		}

		config = strings.ReplaceAll(config, pairs[i], pairs[i+1])
	}

	return config
}

func TestRestarts(t *testing.T) {
	worker := func(t *testing.T) string { return edit(t, base, "type: controlplane", "type: worker") }
	cv, cfv, sv := ConfigVersionAnnotation, ConfigFileVersionAnnotation, SecretsVersionAnnotation
	all := map[string][]string{APIServer: {cv, cfv, sv}, ControllerManager: {cv, sv}, Scheduler: {cv, sv}}

	for _, tc := range []struct {
		name          string
		before, after func(t *testing.T) string // nil: the base
		want          map[string][]string
	}{
		{name: "nothing", want: nil},
		{
			name: "a flag of the API server",
			after: func(t *testing.T) string {
				return edit(t, base, "bind-address: 0.0.0.0", "bind-address: 0.0.0.0\n      audit-log-maxage: \"31\"")
			},
			want: map[string][]string{APIServer: {cv}},
		},
		// The scheduler's config is one of the API server's config files (render_config_static_pods.go:221-227).
		{
			name:  "the scheduler's image",
			after: func(t *testing.T) string { return edit(t, base, "kube-scheduler:v1.34.1", "kube-scheduler:v1.35.0") },
			want:  map[string][]string{APIServer: {cfv}, Scheduler: {cv}},
		},
		{
			name: "the scheduler's flags, as monitoring sets them (plans/apiserver.py)",
			after: func(t *testing.T) string {
				return edit(t, base, "kube-scheduler:v1.34.1", "kube-scheduler:v1.34.1\n    extraArgs:\n      bind-address: 0.0.0.0")
			},
			want: map[string][]string{APIServer: {cfv}, Scheduler: {cv}},
		},
		// The API server's image is in its AuthorizationConfig too (control_plane.go:112).
		{name: "the API server's image", after: func(t *testing.T) string { return edit(t, base, "kube-apiserver:v1.34.1", "kube-apiserver:v1.35.0") }, want: map[string][]string{APIServer: {cv, cfv}}},
		{name: "every image", after: func(t *testing.T) string { return edit(t, base, "v1.34.1", "v1.35.0") }, want: map[string][]string{APIServer: {cv, cfv}, ControllerManager: {cv}, Scheduler: {cv}}},
		{
			name: "an audit policy",
			after: func(t *testing.T) string {
				return edit(t, base, "    extraArgs:\n      bind-address: 0.0.0.0", "    extraArgs:\n      bind-address: 0.0.0.0\n    auditPolicy:\n      apiVersion: audit.k8s.io/v1\n      kind: Policy\n      rules: [{level: None}]")
			},
			want: map[string][]string{APIServer: {cfv}},
		},
		// A certificate SAN is in KubernetesRoot (secrets/root.go:102): new Kubernetes secrets, every pod anew.
		{
			name: "a certificate SAN",
			after: func(t *testing.T) string {
				return edit(t, base, "  apiServer:\n", "  apiServer:\n    certSANs: [api.arda.example]\n")
			},
			want: map[string][]string{APIServer: {sv}, ControllerManager: {sv}, Scheduler: {sv}},
		},
		// The service subnets feed the API server and the controller-manager (control_plane.go:202, 244), and the
		// API server's service IP the secrets (root.go:105).
		{
			name:  "the service subnets",
			after: func(t *testing.T) string { return edit(t, base, "10.96.0.0/12", "10.97.0.0/16") },
			want:  map[string][]string{APIServer: {cv, sv}, ControllerManager: {cv, sv}, Scheduler: {sv}},
		},
		// The endpoint is the API server's (its service-account issuer, control_plane.go:199) and the secrets' (root.go:100).
		{
			name:  "the endpoint",
			after: func(t *testing.T) string { return edit(t, base, "10.0.0.10:6443", "10.0.0.11:6443") },
			want:  map[string][]string{APIServer: {cv, sv}, ControllerManager: {sv}, Scheduler: {sv}},
		},
		// The kubelet, the installer and kube-proxy are no static pod's.
		{
			name: "the kubelet, installer and proxy images",
			after: func(t *testing.T) string {
				return edit(t, base, "kubelet:v1.34.1", "kubelet:v1.35.0", "installer:v1.13.0", "installer:v1.13.1", "kube-proxy:v1.34.1", "kube-proxy:v1.35.0")
			},
			want: nil,
		},
		{name: "a worker has none", before: worker, after: func(t *testing.T) string { return edit(t, worker(t), "v1.34.1", "v1.35.0") }, want: nil},
		{name: "from no config, every one is new", before: func(*testing.T) string { return "" }, want: all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load := func(f func(*testing.T) string) *configOrNil {
				text := base
				if f != nil {
					text = f(t)
				}

				if text == "" {
					return &configOrNil{}
				}

				cfg, err := LoadConfig(text)
				if err != nil {
					t.Fatal(err)
				}

				return &configOrNil{cfg}
			}

			if got := Restarts(load(tc.before).Provider, load(tc.after).Provider); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Restarts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestServedPod(t *testing.T) {
	pod := map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{
			ConfigVersionAnnotation: "2", ConfigFileVersionAnnotation: "1112", SecretsVersionAnnotation: "1", "other.example/key": "x",
		}},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.34.1"}}},
	}

	got := servedPod(pod)
	want := ServedPod{Image: "registry.k8s.io/kube-apiserver:v1.34.1", Annotations: map[string]string{ConfigVersionAnnotation: "2", ConfigFileVersionAnnotation: "1112", SecretsVersionAnnotation: "1"}}

	if !reflect.DeepEqual(got, want) {
		t.Fatalf("servedPod = %+v, want %+v", got, want)
	}

	if d := got.Describe(); d != "talos.dev/config-version=2, talos.dev/config-file-version=1112, talos.dev/secrets-version=1" {
		t.Fatalf("Describe = %q", d)
	}
}

type configOrNil struct{ coreconfig.Provider }
