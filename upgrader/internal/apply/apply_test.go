package apply

import (
	"strings"
	"testing"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/talos"
)

func TestUpgradeAPIByTalosVersion(t *testing.T) {
	for tag, lifecycle := range map[string]bool{
		"v1.12.4":         false,
		"v1.13.0":         true,
		"v1.13.0-alpha.3": true,
		"v2.0.0":          true,
		"unknown":         true, // a version it cannot read: the newer API, and the legacy one if it is not served
	} {
		if lifecycleAPI(tag) != lifecycle {
			t.Errorf("lifecycleAPI(%q) = %v", tag, !lifecycle)
		}
	}
}

func TestRefuseDowngrade(t *testing.T) {
	config := func(apiserver, kubelet string) string {
		return `version: v1alpha1
machine:
  type: controlplane
  kubelet:
    image: ghcr.io/siderolabs/kubelet:` + kubelet + `
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
  apiServer:
    image: registry.k8s.io/kube-apiserver:` + apiserver + `
  controllerManager:
    image: registry.k8s.io/kube-controller-manager:v1.34.1
  scheduler:
    image: registry.k8s.io/kube-scheduler:v1.34.1
`
	}

	for _, tc := range []struct {
		name, running, next string
		want                string
	}{
		{name: "the same", running: config("v1.35.0", "v1.34.1"), next: config("v1.35.0", "v1.34.1")},
		{name: "an upgrade", running: config("v1.34.1", "v1.34.1"), next: config("v1.35.0", "v1.35.0")},
		{name: "a patch release back", running: config("v1.35.1", "v1.34.1"), next: config("v1.35.0", "v1.34.1")},
		{
			name: "the API server a minor back", running: config("v1.35.0", "v1.34.1"), next: config("v1.34.1", "v1.34.1"),
			want: "valinor: kubernetes-version: the config names kube-apiserver v1.34.1, but the node runs v1.35.0 (a Kubernetes upgrade went this far): " +
				"Kubernetes does not go back a minor; set iluvatar:arda.kubernetesVersion to v1.35.0 and run pulumi up to finish the upgrade; nothing was changed",
		},
		{
			name: "the kubelet a minor back", running: config("v1.34.1", "v1.35.0"), next: config("v1.34.1", "v1.34.1"),
			want: "valinor: kubernetes-version: the config names kubelet v1.34.1, but the node runs v1.35.0 (a Kubernetes upgrade went this far): " +
				"Kubernetes does not go back a minor; set iluvatar:arda.kubernetesVersion to v1.35.0 and run pulumi up to finish the upgrade; nothing was changed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running, err := talos.LoadConfig(tc.running)
			if err != nil {
				t.Fatal(err)
			}

			next, err := talos.LoadConfig(tc.next)
			if err != nil {
				t.Fatal(err)
			}

			r := &applyRun{n: input.Node{Name: "valinor", IP: "10.0.0.11"}, role: "controlplane", cfg: next}

			got := ""
			if err := r.refuseDowngrade(running); err != nil {
				got = err.Error()
			}

			if got != tc.want {
				t.Fatalf("refuseDowngrade: %q\nwant %q", got, tc.want)
			}
		})
	}
}

// checkPath: forward one minor, a patch either way, and nothing else (a lower minor refused).
func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		running, version, refused string
	}{
		{"v1.13.9", "v1.14.1", ""},
		{"v1.14.1", "v1.14.0", ""}, // a patch back: machinery allows it below MaximumHostDowngradeVersion
		{"v1.12.4", "v1.14.1", "2 minors ahead"},
		{"v1.13.9", "v1.12.4", "a lower minor: Iluvatar never rolls a minor back (set arda.talosVersion to a v1.13 release"},
	} {
		r := &applyRun{n: input.Node{Name: "m1", IP: "10.0.0.1"}, version: tc.version, schema: "abc"}
		err := r.checkPath(tc.running)

		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s -> %s: refused: %v", tc.running, tc.version, err)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s -> %s: %v, want %q", tc.running, tc.version, err, tc.refused)
		}
	}
}
