package apply

import (
	"fmt"
	"strconv"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
)

// refuseDowngrade refuses, before anything changes, a config whose Kubernetes images are a minor (or
// more) older than the ones the node runs now, its active config's: Kubernetes goes back no minor
// (https://kubernetes.io/releases/version-skew-policy/), and an API server taken back below the
// kubelets breaks the skew rules too. The program compares arda.kubernetesVersion only with the
// version its last deployment exported, which stays the old one when a Kubernetes upgrade failed or
// was killed halfway: setting the version back then would push the old images over the new ones.
// A patch release back within the minor passes.
func (r *applyRun) refuseDowngrade(active coreconfig.Provider) error {
	if active == nil || active.Machine() == nil {
		return nil
	}

	now, next := k8sImages(active, r.controlPlane()), k8sImages(r.cfg, r.controlPlane())

	for _, component := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"} {
		running, wanted := kube.TagOf(now[component]), kube.TagOf(next[component])

		was, ok1 := minorOf(running)
		will, ok2 := minorOf(wanted)

		if !ok1 || !ok2 || will >= was {
			continue
		}

		return &report.Failure{Node: r.n.Name, Check: "kubernetes-version", Look: r.talosLook("get machineconfig -o yaml"), Detail: fmt.Sprintf(
			"the config names %s %s, but the node runs %s (a Kubernetes upgrade went this far): Kubernetes does not go back a minor; "+
				"set iluvatar:arda.kubernetesVersion to %s and run pulumi up to finish the upgrade; nothing was changed",
			component, wanted, running, running)}
	}

	return nil
}

// minorOf is a Kubernetes version's minor (v1.35.0 -> 35).
func minorOf(tag string) (int, bool) {
	parts := strings.SplitN(strings.TrimPrefix(tag, "v"), ".", 3)
	if len(parts) < 2 || parts[0] != "1" {
		return 0, false
	}

	minor, err := strconv.Atoi(parts[1])

	return minor, err == nil
}
