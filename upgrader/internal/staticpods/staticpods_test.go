package staticpods

import (
	"fmt"
	"testing"
	"time"

	"github.com/iluvatar/upgrader/internal/talos"
)

const controlPlane = `version: v1alpha1
machine:
  type: controlplane
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.34.1
  controlPlane:
    scheduler:
      disabled: %v
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
  apiServer:
    image: registry.k8s.io/kube-apiserver:v1.34.1
  controllerManager:
    image: registry.k8s.io/kube-controller-manager:v1.34.1
  scheduler:
    image: registry.k8s.io/kube-scheduler:v1.34.1
`

func pod(cv, cfv, sv string) talos.ServedPod {
	a := map[string]string{talos.ConfigVersionAnnotation: cv, talos.SecretsVersionAnnotation: sv}
	if cfv != "" {
		a[talos.ConfigFileVersionAnnotation] = cfv
	}

	return talos.ServedPod{Image: "image", Annotations: a}
}

func TestCheckServed(t *testing.T) {
	first := map[string]talos.ServedPod{
		talos.APIServer: pod("1", "1111", "1"), talos.ControllerManager: pod("1", "", "1"), talos.Scheduler: pod("1", "", "1"),
	}
	// A change of the scheduler's config: its own config-version, and the API server's config-file-version.
	schedulerMoved := map[string]talos.ServedPod{
		talos.APIServer: pod("1", "1112", "1"), talos.ControllerManager: pod("1", "", "1"), talos.Scheduler: pod("2", "", "1"),
	}
	moves := map[string][]string{talos.APIServer: {talos.ConfigFileVersionAnnotation}, talos.Scheduler: {talos.ConfigVersionAnnotation}}
	t0 := time.Unix(1_700_000_000, 0)

	for _, tc := range []struct {
		name     string
		disabled bool
		before   map[string]talos.ServedPod // nil: no change pending
		seen     map[string]talos.ServedPod // what the last look saw, at t0
		served   map[string]talos.ServedPod
		after    time.Duration // since t0
		want     string
	}{
		{name: "as it is, nothing pending", served: first},
		{name: "no pod served yet", served: map[string]talos.ServedPod{}, want: "Talos serves no kube-apiserver pod yet"},
		{name: "a disabled scheduler still served", disabled: true, served: first, want: "Talos still serves a kube-scheduler pod, which the config disables"},
		{
			name: "a disabled scheduler gone", disabled: true,
			served: map[string]talos.ServedPod{talos.APIServer: first[talos.APIServer], talos.ControllerManager: first[talos.ControllerManager]},
		},
		{
			name: "the change not rendered yet", before: first, served: first,
			want: "Talos has not rendered kube-apiserver's new pod yet (its talos.dev/config-file-version is still 1111)",
		},
		{
			name: "rendered, first seen now", before: first, served: schedulerMoved, after: 0,
			want: "the pods Talos serves last changed 0s ago (kube-apiserver: talos.dev/config-version=1, talos.dev/config-file-version=1112, talos.dev/secrets-version=1; " +
				"kube-controller-manager: talos.dev/config-version=1, talos.dev/secrets-version=1; kube-scheduler: talos.dev/config-version=2, talos.dev/secrets-version=1): " +
				"they count once unchanged for 30s, as Talos renders them after the apply answers",
		},
		{name: "rendered, and unchanged for Stable", before: first, seen: schedulerMoved, served: schedulerMoved, after: 30 * time.Second},
		{
			name: "changed again since", before: first, seen: schedulerMoved, after: 31 * time.Second,
			served: map[string]talos.ServedPod{talos.APIServer: pod("1", "1112", "2"), talos.ControllerManager: pod("1", "", "2"), talos.Scheduler: pod("2", "", "2")},
			want:   "the pods Talos serves last changed 0s ago",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := talos.LoadConfig(fmt.Sprintf(controlPlane, tc.disabled))
			if err != nil {
				t.Fatal(err)
			}

			w := &Watch{Node: "valinor", IP: "10.0.0.11", Stable: DefaultStable}
			if tc.before != nil {
				w.before, w.moves = tc.before, moves
			}

			if tc.seen != nil {
				w.served, w.settled = tc.seen, t0
			}

			err = w.checkServed(tc.served, cfg, t0.Add(tc.after))

			got := ""
			if err != nil {
				got = err.Error()
			}

			if tc.want == "" && got != "" || tc.want != "" && (len(got) < len(tc.want) || got[:len(tc.want)] != tc.want) {
				t.Fatalf("checkServed: %q, want %q", got, tc.want)
			}
		})
	}
}

func TestChanges(t *testing.T) {
	withImage := func(p talos.ServedPod, image string) talos.ServedPod {
		p.Image = image

		return p
	}

	for _, tc := range []struct {
		name string
		a, b map[string]talos.ServedPod
		want string
	}{
		{
			name: "an annotation moved",
			a:    map[string]talos.ServedPod{talos.Scheduler: pod("2", "", "1")},
			b:    map[string]talos.ServedPod{talos.Scheduler: pod("3", "", "1")},
			want: "kube-scheduler: talos.dev/config-version 2 -> 3",
		},
		{
			name: "the image moved, which Describe leaves out",
			a:    map[string]talos.ServedPod{talos.APIServer: pod("1", "1112", "1")},
			b:    map[string]talos.ServedPod{talos.APIServer: withImage(pod("1", "1112", "1"), "registry.k8s.io/kube-apiserver:v1.34.2")},
			want: "kube-apiserver: image image -> registry.k8s.io/kube-apiserver:v1.34.2",
		},
		{
			name: "an annotation gone, a pod gone, a pod new",
			a:    map[string]talos.ServedPod{talos.APIServer: pod("1", "1112", "1"), talos.Scheduler: pod("2", "", "1")},
			b:    map[string]talos.ServedPod{talos.APIServer: pod("1", "", "1"), talos.ControllerManager: pod("1", "", "1")},
			want: "kube-apiserver: talos.dev/config-file-version 1112 -> none; " +
				"kube-controller-manager: served anew (talos.dev/config-version=1, talos.dev/secrets-version=1); kube-scheduler: no longer served",
		},
		{name: "the same", a: map[string]talos.ServedPod{talos.Scheduler: pod("2", "", "1")}, b: map[string]talos.ServedPod{talos.Scheduler: pod("2", "", "1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := changes(tc.a, tc.b); got != tc.want {
				t.Fatalf("changes: %q, want %q", got, tc.want)
			}
		})
	}
}

// Once the pods have counted as rendered, a later change of what Talos serves starts the quiet
// period again: the watch does not keep counting pods Talos has since replaced.
func TestCheckServedAfterCounting(t *testing.T) {
	cfg, err := talos.LoadConfig(fmt.Sprintf(controlPlane, false))
	if err != nil {
		t.Fatal(err)
	}

	first := map[string]talos.ServedPod{talos.APIServer: pod("1", "1111", "1"), talos.ControllerManager: pod("1", "", "1"), talos.Scheduler: pod("1", "", "1")}
	moved := map[string]talos.ServedPod{talos.APIServer: pod("1", "1112", "1"), talos.ControllerManager: pod("1", "", "1"), talos.Scheduler: pod("2", "", "1")}
	again := map[string]talos.ServedPod{talos.APIServer: pod("1", "1113", "1"), talos.ControllerManager: pod("1", "", "1"), talos.Scheduler: pod("3", "", "1")}
	t0 := time.Unix(1_700_000_000, 0)

	w := &Watch{Node: "valinor", IP: "10.0.0.11", Stable: time.Second}
	w.before, w.moves = first, map[string][]string{talos.APIServer: {talos.ConfigFileVersionAnnotation}, talos.Scheduler: {talos.ConfigVersionAnnotation}}

	steps := []struct {
		served  map[string]talos.ServedPod
		at      time.Duration
		want    string
		counted bool
	}{
		{served: moved, at: 0, want: "the pods Talos serves last changed 0s ago"},
		{served: moved, at: time.Second, counted: true},
		{served: again, at: 1500 * time.Millisecond, want: "the pods Talos serves last changed 0s ago"},
		{served: again, at: 2400 * time.Millisecond, want: "the pods Talos serves last changed 900ms ago"},
		{served: again, at: 2500 * time.Millisecond, counted: true},
	}

	for i, s := range steps {
		got := ""
		if err := w.checkServed(s.served, cfg, t0.Add(s.at)); err != nil {
			got = err.Error()
		}

		if s.want == "" && got != "" || s.want != "" && (len(got) < len(s.want) || got[:len(s.want)] != s.want) {
			t.Fatalf("look %d: checkServed: %q, want %q", i, got, s.want)
		}

		if w.counted != s.counted {
			t.Fatalf("look %d: counted %v, want %v", i, w.counted, s.counted)
		}
	}
}
