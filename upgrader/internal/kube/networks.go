package kube

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iluvatar/upgrader/internal/wait"
)

// Networks is what a running cluster was numbered with, as the API holds it.
type Networks struct {
	// ServiceIP is the default/kubernetes Service's clusterIP, "" when there is no such Service (no API server has
	// run yet). kube-apiserver creates that Service once with the first address of its primary service range
	// (k8s.io/kubernetes v1.34.1 cmd/kube-apiserver/app/options/completion.go:119, pkg/controlplane/apiserver/
	// options/options.go:378-379) and leaves an existing one as it is (pkg/controlplane/controller/
	// kubernetesservice/controller.go:212-222): it keeps the range the cluster was made with.
	ServiceIP string
	// Node: the Node exists. PodCIDRs are its spec.podCIDRs, which kube-controller-manager's range allocator hands
	// out of the cluster CIDR once and then only keeps (pkg/controller/nodeipam/ipam/range_allocator.go:316-324);
	// the API refuses any later change of them (pkg/apis/core/validation/validation.go:6957-6964).
	Node     bool
	PodCIDRs []string
}

// ClusterNetworks reads the default/kubernetes Service and the Node; NotFound is an answer (absent), any other
// error is returned.
func (k *Client) ClusterNetworks(ctx context.Context, node string) (Networks, error) {
	var out Networks

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	svc, err := k.cs.CoreV1().Services(metav1.NamespaceDefault).Get(cctx, "kubernetes", metav1.GetOptions{})

	switch {
	case err == nil:
		out.ServiceIP = svc.Spec.ClusterIP
	case !apierrors.IsNotFound(err):
		return out, err
	}

	nctx, ncancel := wait.Call(ctx)
	defer ncancel()

	n, err := k.cs.CoreV1().Nodes().Get(nctx, node, metav1.GetOptions{})

	switch {
	case err == nil:
		out.Node, out.PodCIDRs = true, n.Spec.PodCIDRs
	case !apierrors.IsNotFound(err):
		return out, err
	}

	return out, nil
}
