package kube

import (
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
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
