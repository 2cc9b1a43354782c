// A config change: Talos's own dry run decides, and a change it applies live is applied here.

package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// dryRun asks the node what the config change needs (Talos's CanApplyImmediate): true when a reboot. From Talos 1.14
// on the node's answer is always "no reboot" (immediate.go), so the upgrader decides with 1.13's rule: a change to
// .machine.files (sign-in's AuthenticationConfiguration) goes through the drain, the staged config and a reboot,
// and the health checks after it see the file the boot wrote.
func (r *applyRun) dryRun(ctx context.Context, running string, active coreconfig.Provider) (bool, error) {
	look := r.talosLook("apply-config --dry-run --file CONFIG")

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_AUTO, DryRun: true})
	if err != nil {
		return false, &report.Failure{Node: r.n.Name, Check: "dry-run", Detail: "Talos refused the config: " + talos.Message(err), Look: look}
	}

	if len(resp.GetMessages()) == 0 {
		return false, &report.Failure{Node: r.n.Name, Check: "dry-run", Detail: "no answer", Look: look}
	}

	reboot := resp.GetMessages()[0].GetMode() == machineapi.ApplyConfigurationRequest_REBOOT

	if !reboot && decidesReboot(running) {
		if err := canApplyImmediate(active, r.cfg, criLive(running)); err != nil {
			what := report.FirstLine(err)

			var ni *notImmediate
			if errors.As(err, &ni) && len(ni.fields) > 0 {
				what = strings.Join(ni.fields, ", ") + " (Talos 1.13's CanApplyImmediate: a reboot)"
			}

			report.Progress(r.n.Name, "config changed: Talos %s would take it live, but it changes what acts only at boot, %s: staged, with a reboot",
				running, what)

			return true, nil
		}
	}

	if reboot {
		report.Progress(r.n.Name, "config changed: Talos needs a reboot to apply it")
	} else {
		report.Progress(r.n.Name, "config changed: Talos applies it without a reboot")
	}

	return reboot, nil
}

// k8sImages are the Kubernetes images a config makes the node run, by component.
func k8sImages(cfg coreconfig.Provider, controlPlane bool) map[string]string {
	images := map[string]string{"kubelet": cfg.Machine().Kubelet().Image()}

	if controlPlane && cfg.Cluster() != nil {
		images["kube-apiserver"] = cfg.Cluster().APIServer().Image()
		images["kube-controller-manager"] = cfg.Cluster().ControllerManager().Image()
		images["kube-scheduler"] = cfg.Cluster().Scheduler().Image()
		images["etcd"] = cfg.Cluster().Etcd().Image()
	}

	return images
}

// applyNow applies a change Talos takes without a reboot, new Kubernetes images pulled first so
// the restart that follows is short.
func (r *applyRun) applyNow(ctx context.Context, active coreconfig.Provider) error {
	look := r.talosLook("apply-config --mode no-reboot --dry-run --file CONFIG")

	if r.bootstrapped {
		before := map[string]string{}
		if active != nil && active.Machine() != nil {
			before = k8sImages(active, r.controlPlane())
		}

		for _, component := range []string{"kubelet", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			image, ok := k8sImages(r.cfg, r.controlPlane())[component]
			if !ok || image == "" || image == before[component] {
				continue
			}

			ci := talos.CRIContainerd()
			if component == "kubelet" || component == "etcd" {
				ci = talos.SystemContainerd() // Talos runs these itself, from its system namespace
			}

			report.Progress(r.n.Name, "pulling %s", image)

			if err := talos.PullTo(ctx, r.c, r.lifecycle, ci, image); err != nil {
				return &report.Failure{Node: r.n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", image, talos.Message(err)), Look: r.talosLook("image pull " + image)}
			}
		}
	}

	if r.controlPlane() && r.bootstrapped && r.kube != nil {
		if err := r.noteChanging(ctx, active); err != nil {
			return err
		}
	}

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	if _, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_NO_REBOOT}); err != nil {
		return &report.Failure{Node: r.n.Name, Check: "apply", Detail: "Talos refused the config: " + talos.Message(err), Look: look}
	}

	report.Progress(r.n.Name, "config applied without a reboot")

	if r.moving() {
		return r.follow(ctx)
	}

	return nil
}

// readConfigs reads the node's active and saved configs: whether the active one is this step's (same), and whether an
// earlier run staged this step's config and never rebooted (staged: only the reboot is missing). A changed config
// that would take Kubernetes back a minor is refused here, before anything changes (downgrade.go).
func (r *applyRun) readConfigs(ctx context.Context) (active coreconfig.Provider, same, staged bool, err error) {
	active, persistent, err := talos.MachineConfigs(ctx, r.c)
	if err != nil {
		return nil, false, false, report.From(r.n.Name, "config", r.talosLook("get machineconfig"), err)
	}

	if same, err = talos.SameConfig(active, r.cfg); err != nil {
		return nil, false, false, err
	}

	if same {
		return active, true, false, nil
	}

	if err := r.refuseDowngrade(active); err != nil {
		return nil, false, false, err
	}

	if samePersistent, err := talos.SameConfig(persistent, r.cfg); err == nil && samePersistent {
		staged = true
	}

	return active, false, staged, nil
}
