package kube

import (
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPauseArgument(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want Workload
		err  string
	}{
		{arg: "StatefulSet/argocd/argocd-application-controller", want: Workload{Kind: "StatefulSet", Namespace: "argocd", Name: "argocd-application-controller"}},
		{arg: "deploy/default/web", want: Workload{Kind: "Deployment", Namespace: "default", Name: "web"}},
		{arg: "sts/db/pg", want: Workload{Kind: "StatefulSet", Namespace: "db", Name: "pg"}},
		{arg: "Deployment/web", err: `--pause "Deployment/web" is not KIND/NAMESPACE/NAME`},
		{arg: "Deployment//web", err: `--pause "Deployment//web" is not KIND/NAMESPACE/NAME`},
		{arg: "DaemonSet/kube-system/cilium", err: `--pause "DaemonSet/kube-system/cilium": only a Deployment or a StatefulSet can be paused`},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := ParseWorkload(tc.arg)
			if fmt.Sprint(err) != map[bool]string{true: "<nil>", false: tc.err}[tc.err == ""] || got != tc.want {
				t.Fatalf("ParseWorkload(%q) = %+v, %v; want %+v, %q", tc.arg, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for image, want := range map[string]string{
		"ghcr.io/siderolabs/kubelet:v1.34.1":                 "v1.34.1",
		"registry.k8s.io/kube-apiserver:v1.34.1@sha256:abcd": "v1.34.1",
		"localhost:5000/kubelet":                             "",
	} {
		if got := TagOf(image); got != want {
			t.Errorf("TagOf(%q) = %q; want %q", image, got, want)
		}
	}
}

func TestRequestedDeprecatedAPIs(t *testing.T) {
	metrics := []byte(`# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.32",resource="flowschemas",subresource="",version="v1beta3"} 1
apiserver_requested_deprecated_apis{group="",removed_release="1.35",resource="componentstatuses",subresource="",version="v1"} 1
apiserver_requested_deprecated_apis{group="example.com",removed_release="",resource="widgets",subresource="status",version="v1alpha1"} 1
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.32",resource="flowschemas",subresource="",version="v1beta3"} 1
apiserver_request_total{code="200"} 5
`)

	for _, tc := range []struct {
		target         string
		removed, later string
	}{
		{
			target:  "v1.34.1",
			removed: "[flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.32)]",
			later:   "[example.com/v1alpha1 widgets/status (no removal release named) v1 componentstatuses (removed in 1.35)]",
		},
		{
			target:  "v1.35.0",
			removed: "[flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.32) v1 componentstatuses (removed in 1.35)]",
			later:   "[example.com/v1alpha1 widgets/status (no removal release named)]",
		},
	} {
		t.Run(tc.target, func(t *testing.T) {
			target, _ := parseKVersion(tc.target)
			removed, later := requestedDeprecatedAPIs(metrics, target)

			if fmt.Sprint(removed) != tc.removed || fmt.Sprint(later) != tc.later {
				t.Fatalf("removed %q, later %q; want %q, %q", removed, later, tc.removed, tc.later)
			}
		})
	}
}

func TestAfterHooksMark(t *testing.T) {
	for mark, want := range map[string]string{
		"":                           "[]",
		"rook-ceph/ceph-noout-unset": "[rook-ceph/ceph-noout-unset]",
		"rook-ceph/ceph-noout-unset, default/after": "[rook-ceph/ceph-noout-unset default/after]",
		"a/b,,a/b": "[a/b]", // each Job once, whatever wrote the mark
	} {
		if got := fmt.Sprint(ParseAfterHooks(mark)); got != want {
			t.Errorf("ParseAfterHooks(%q) = %s; want %s", mark, got, want)
		}
	}

	job := batchv1.Job{}
	job.Name = "after"

	if got := JobRef(job); got != "default/after" {
		t.Errorf("JobRef of a Job without a namespace = %q; want default/after (where RunJob runs it)", got)
	}
}

func TestCheckStaticPod(t *testing.T) {
	now := time.Unix(1_700_000_100, 0)
	boot := time.Unix(1_700_000_000, 0)
	annotations := map[string]string{"talos.dev/config-version": "2", "talos.dev/config-file-version": "1112", "talos.dev/secrets-version": "1"}
	want := PodWant{Image: "registry.k8s.io/kube-apiserver:v1.34.1", Annotations: annotations, Since: boot, Stable: 30 * time.Second}

	running := func(started time.Time) corev1.ContainerState {
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}}
	}

	podWith := func(edit func(p *corev1.Pod)) []corev1.Pod {
		p := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "kube-apiserver-valinor", Labels: map[string]string{"k8s-app": "kube-apiserver"},
				Annotations: map[string]string{"talos.dev/config-version": "2", "talos.dev/config-file-version": "1112", "talos.dev/secrets-version": "1"},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.k8s.io/kube-apiserver:v1.34.1"}}},
			Status: corev1.PodStatus{
				Phase:             corev1.PodRunning,
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "kube-apiserver", Ready: true, State: running(now.Add(-time.Minute))}},
			},
		}

		if edit != nil {
			edit(&p)
		}

		return []corev1.Pod{p}
	}

	for _, tc := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{name: "as Talos serves it, running a minute", pods: podWith(nil)},
		{name: "none", pods: nil, want: "no kube-apiserver pod on valinor"},
		{
			name: "the old pod: the config files' version not moved",
			pods: podWith(func(p *corev1.Pod) { p.Annotations["talos.dev/config-file-version"] = "1111" }),
			want: "kube-apiserver-valinor carries talos.dev/config-file-version 1111, not 1112 (what Talos serves now): the kubelet has not run the new static pod yet",
		},
		{
			name: "the old pod: no secrets version at all",
			pods: podWith(func(p *corev1.Pod) { delete(p.Annotations, "talos.dev/secrets-version") }),
			want: "kube-apiserver-valinor carries talos.dev/secrets-version none, not 1 (what Talos serves now): the kubelet has not run the new static pod yet",
		},
		{
			name: "in a crash loop's back-off",
			pods: podWith(func(p *corev1.Pod) {
				p.Status.Conditions[0].Status = corev1.ConditionFalse
				p.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "kube-apiserver", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
			}),
			want: "kube-apiserver-valinor is not Ready (CrashLoopBackOff, restarted 4 times)",
		},
		{
			name: "Ready a moment after its last restart",
			pods: podWith(func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].RestartCount = 5
				p.Status.ContainerStatuses[0].State = running(now.Add(-2 * time.Second))
			}),
			want: "kube-apiserver-valinor has run 2s since it last started (restarted 5 times): it counts once it has run 30s untouched",
		},
		{
			name: "Ready from the boot before",
			pods: podWith(func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running(boot.Add(-time.Hour)) }),
			want: "kube-apiserver-valinor reports a container started 2023-11-14T21:13:20Z, before the node's boot (2023-11-14T22:13:20Z): the kubelet of this boot has not reported it yet",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fmt.Sprint(checkStaticPod(tc.pods, "valinor", "kube-apiserver", want, now))
			if tc.want == "" && got != "<nil>" || tc.want != "" && got != tc.want {
				t.Fatalf("checkStaticPod: %s\nwant %s", got, tc.want)
			}
		})
	}
}
