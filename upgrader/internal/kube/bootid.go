package kube

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeBootID is the boot ID the Node's kubelet last reported (status.nodeInfo.bootID). The kubelet
// copies cadvisor's MachineInfo.BootID (k8s.io/kubernetes v1.34.1 pkg/kubelet/nodestatus/
// setters.go:241-252), which cadvisor reads from /proc/sys/kernel/random/boot_id (cadvisor v0.52.1
// machine/info.go:41 and 144): the kernel's one boot ID, the file Talos's Read answers it from too.
// A Node reporting the machine's current boot ID was reported by the kubelet of this boot, not left
// over from before a reboot or a reflash.
func (k *Client) NodeBootID(ctx context.Context, node string) (string, error) {
	n, err := k.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", err
	}

	return n.Status.NodeInfo.BootID, nil
}
