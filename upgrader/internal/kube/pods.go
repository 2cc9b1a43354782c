package kube

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iluvatar/upgrader/internal/wait"
)

// Pods is whether the cluster serves pods yet, as its Nodes say.
type Pods int

const (
	// PodsServed: some Node is Ready.
	PodsServed Pods = iota
	// PodsNoCNI: no Node is Ready, and a kubelet says why: its container runtime's network is not ready,
	// which is how a kubelet reports a machine with no CNI (k8s.io/kubernetes v1.34.1 pkg/kubelet/kubelet.go:3009-3013
	// "container runtime network not ready", made the Ready condition's message with reason KubeletNotReady by
	// pkg/kubelet/nodestatus/setters.go:467-510). Arda's configs install no CNI (cni: none): Cilium comes after
	// every machine's apply, so a bring-up is this until then.
	PodsNoCNI
	// PodsNone: no Node is Ready, and no kubelet blames the network (no Node at all yet, kubelets that stopped
	// posting, or NotReady for another reason): a cluster that serves no pods, not for want of a CNI.
	PodsNone
)

// NetworkNotReady is what a kubelet's Ready condition says while no CNI runs on its machine.
const NetworkNotReady = "container runtime network not ready"

// ServesPods reads every Node: PodsServed with the Ready ones' names, else why none is.
func (k *Client) ServesPods(ctx context.Context) (Pods, []string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return PodsNone, nil, err
	}

	var ready, noCNI []string

	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type != corev1.NodeReady {
				continue
			}

			switch {
			case c.Status == corev1.ConditionTrue:
				ready = append(ready, n.Name)
			case c.Status == corev1.ConditionFalse && strings.Contains(c.Message, NetworkNotReady):
				noCNI = append(noCNI, n.Name)
			}
		}
	}

	switch {
	case len(ready) > 0:
		return PodsServed, ready, nil
	case len(noCNI) > 0:
		return PodsNoCNI, noCNI, nil
	}

	return PodsNone, nil, nil
}

// NodeExists: the Node object is there (its kubelet registered it), Ready or not.
func (k *Client) NodeExists(ctx context.Context, name string) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	_, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})

	return err
}
