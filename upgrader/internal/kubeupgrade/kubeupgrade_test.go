package kubeupgrade

import (
	"reflect"
	"testing"

	"github.com/iluvatar/upgrader/internal/input"
)

func TestRemovedBy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		component string
		args      map[string][]string
		from, to  int
		want      []string
	}{
		{name: "a kubelet flag 1.35 removed", component: "kubelet", args: map[string][]string{"pod-infra-container-image": {"x"}}, from: 34, to: 35, want: []string{"--pod-infra-container-image (removed in 1.35)"}},
		{name: "already past it", component: "kubelet", args: map[string][]string{"pod-infra-container-image": {"x"}}, from: 35, to: 35},
		{name: "the same flag on another component", component: "kube-apiserver", args: map[string][]string{"pod-infra-container-image": {"x"}}, from: 34, to: 35},
		{
			name: "a feature gate among others", component: "kube-controller-manager", args: map[string][]string{"feature-gates": {"A=true,SizeMemoryBackedVolumes=false"}},
			from: 34, to: 35, want: []string{"feature gate SizeMemoryBackedVolumes (removed in 1.35)"},
		},
		// A kubelet given a gate it does not know refuses to start (cmd/kubelet/app/server.go:203): 1.35's are the kubelet's.
		{
			name: "a kubelet feature gate 1.35 removed", component: "kubelet", args: map[string][]string{"feature-gates": {"SizeMemoryBackedVolumes=true,UserNamespacesHostNetworkSupport=true"}},
			from: 34, to: 35, want: []string{"feature gate SizeMemoryBackedVolumes (removed in 1.35)", "feature gate UserNamespacesHostNetworkSupport (removed in 1.35)"},
		},
		{name: "the API server's cloud-config in 1.33", component: "kube-apiserver", args: map[string][]string{"cloud-config": {"/x"}}, from: 32, to: 33, want: []string{"--cloud-config (removed in 1.33)"}},
		{name: "an admission plugin", component: "kube-apiserver", args: map[string][]string{"enable-admission-plugins": {"NodeRestriction,SecurityContextDeny"}}, from: 29, to: 30, want: []string{"admission plugin SecurityContextDeny (removed in 1.30)"}},
		{name: "nothing removed", component: "kube-apiserver", args: map[string][]string{"audit-log-maxage": {"31"}}, from: 34, to: 35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range removedBy(tc.component, tc.args, tc.from, tc.to) {
				got = append(got, f.String())
			}

			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("removedBy = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGatesRemovedBy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		extraConfig map[string]any
		from, to    int
		want        []string
	}{
		{name: "a kubelet's extraConfig gate 1.35 removed", extraConfig: map[string]any{"featureGates": map[string]any{"SizeMemoryBackedVolumes": true, "Other": false}}, from: 34, to: 35, want: []string{"feature gate SizeMemoryBackedVolumes (removed in 1.35)"}},
		{name: "already past it", extraConfig: map[string]any{"featureGates": map[string]any{"SizeMemoryBackedVolumes": true}}, from: 35, to: 35},
		{name: "no gates", extraConfig: map[string]any{"serializeImagePulls": false}, from: 34, to: 35},
		{name: "no extraConfig", from: 34, to: 35},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range gatesRemovedBy(featureGatesOf(tc.extraConfig), tc.from, tc.to) {
				got = append(got, f.String())
			}

			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("gatesRemovedBy = %q, want %q", got, tc.want)
			}
		})
	}
}

const worker = `version: v1alpha1
machine:
  type: worker
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.35.0
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
`

func TestNewTarget(t *testing.T) {
	n := input.Node{Name: "tirion", IP: "192.168.0.22"}

	for _, tc := range []struct {
		name, config, to string
		controlPlane     bool
		err              string
	}{
		{name: "a worker at the target", config: worker, to: "v1.35.0"},
		{name: "not at --to", config: worker, to: "v1.36.0", err: `stdin: machineConfigs.tirion: machine.kubelet.image is "ghcr.io/siderolabs/kubelet:v1.35.0", not at --to v1.36.0`},
		{name: "given as a control plane", config: worker, to: "v1.35.0", controlPlane: true, err: "stdin: machineConfigs.tirion is a worker config, but the node is given as a --control-plane"},
		{name: "not a config", config: "# worker config for arda", to: "v1.35.0", err: "stdin: machineConfigs.tirion is not a Talos machine config with a machine section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTarget(n, tc.controlPlane, tc.config, tc.to)

			got := ""
			if err != nil {
				got = err.Error()
			}

			if got != tc.err {
				t.Fatalf("newTarget: %q, want %q", got, tc.err)
			}
		})
	}
}

// A component newer than --to is left alone: a path's step on the way run again never takes it backwards.
func TestPast(t *testing.T) {
	r := &run{to: "v1.35.8"}
	for image, want := range map[string]bool{
		"registry.k8s.io/kube-apiserver:v1.36.0":  true,
		"registry.k8s.io/kube-apiserver:v1.35.9":  true,
		"registry.k8s.io/kube-apiserver:v1.35.8":  false,
		"registry.k8s.io/kube-apiserver:v1.34.12": false,
		"ghcr.io/siderolabs/kubelet:v1.36.1":      true,
		"v1.36.0":                                 true, // a Node's reported kubelet version
		"registry.k8s.io/kube-apiserver":          false,
		"":                                        false,
	} {
		if got := r.past(image); got != want {
			t.Errorf("past(%q) = %v, want %v", image, got, want)
		}
	}
}
