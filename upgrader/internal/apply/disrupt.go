// The disruption: one reboot, with Kubernetes prepared around it (drain, hooks, paused workloads) and put back.

package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"

	"github.com/iluvatar/upgrader/internal/kube"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// disrupt takes the node down once: a staged config, a Talos upgrade, or both (the upgrade's
// reboot activates the staged config), behind the etcd checks, hooks, pauses and a drain.
//
//nolint:gocyclo,cyclop
func (r *applyRun) disrupt(ctx context.Context, stage, upgrade bool) error {
	n := r.n

	if r.controlPlane() && r.bootstrapped {
		if err := r.etcdPreflight(ctx, true); err != nil {
			return err
		}
	}

	if upgrade {
		report.Progress(n.Name, "pulling the installer %s", r.image)

		if err := talos.PullImage(ctx, r.c, r.lifecycle, r.image); err != nil {
			return &report.Failure{Node: n.Name, Check: "pull", Detail: fmt.Sprintf("%s: %s", r.image, talos.Message(err)), Look: r.talosLook("image pull --namespace system " + r.image)}
		}
	}

	if err := r.disruptionAllowed(ctx); err != nil {
		return err
	}

	// Whether the Node's kubelet reports its boot (every kubelet does: waitNodeOfThisBoot): after the reboot the
	// Node must be the new boot's, since the old one's Ready stays until the node lifecycle controller's grace ends.
	reportsBoot := false
	if r.kube != nil {
		var err error
		if reportsBoot, err = bootReported(ctx, wait.Every, func(ctx context.Context) (string, error) { return r.kube.NodeBootID(ctx, n.Name) }); err != nil {
			return &report.Failure{Node: n.Name, Check: "node", Detail: "whether the Node reports its boot cannot be read, so nothing was changed: " + report.FirstLine(err), Look: kube.NodeLook(n.Name)}
		}
	}

	// From here on a failure before the reboot puts Kubernetes back as it was, unless the machine's next
	// boot already brings a change (pending): then it stays drained, whatever reboots it.
	prepared, err := r.prepareKube(ctx)
	if err != nil {
		return r.unprepareKube(prepared, err)
	}

	pending := ""

	if stage {
		cctx, cancel := wait.Call(ctx)
		_, err := r.c.ApplyConfiguration(cctx, &machineapi.ApplyConfigurationRequest{Data: []byte(r.secrets.MachineConfig), Mode: machineapi.ApplyConfigurationRequest_STAGED})

		cancel()

		if err != nil {
			return r.unprepareKube(prepared, &report.Failure{Node: n.Name, Check: "apply", Detail: "Talos refused the config: " + talos.Message(err), Look: r.talosLook("apply-config --mode staged --dry-run --file CONFIG")})
		}

		report.Progress(n.Name, "config staged for the next boot")

		pending = "the staged config"
	}

	before, err := talos.BootID(ctx, r.c)
	if err != nil {
		return r.notRebooted(prepared, pending, &report.Failure{Node: n.Name, Check: "boot-id", Detail: talos.Message(err), Look: r.talosLook("read /proc/sys/kernel/random/boot_id")})
	}

	if upgrade {
		if installed, err := r.upgrade(ctx); err != nil {
			if installed != "" {
				pending = joinPending(installed, pending)
			}

			return r.notRebooted(prepared, pending, err)
		}
	} else {
		report.Progress(n.Name, "rebooting")

		if err := r.reboot(ctx); err != nil {
			return r.notRebooted(prepared, pending, err)
		}
	}

	// The node is going down: a failure from here on leaves it cordoned, for a person to look at.
	if r.moving() {
		if err := r.follow(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if err := r.waitReboot(ctx, before); err != nil {
		return r.withLeftovers(err, prepared)
	}

	if err := r.waitRunning(ctx); err != nil {
		return r.withLeftovers(err, prepared)
	}

	if upgrade {
		if err := r.checkVersion(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if stage {
		active, _, err := talos.MachineConfigs(ctx, r.c)
		if err == nil {
			var same bool
			if same, err = talos.SameConfig(active, r.cfg); err == nil && !same {
				err = errors.New("the staged config is not the active one after the reboot")
			}
		}

		if err != nil {
			return r.withLeftovers(&report.Failure{Node: n.Name, Check: "config", Detail: err.Error(), Look: r.talosLook("get machineconfig -o yaml")}, prepared)
		}

		// What the boot alone writes (sign-in's AuthenticationConfiguration): on disk before the node counts as healthy.
		now := r.running
		if upgrade {
			now = r.version // checkVersion saw it
		}

		if err := r.checkFiles(ctx, r.before, now); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if reportsBoot {
		if err := r.waitNodeOfThisBoot(ctx); err != nil {
			return r.withLeftovers(err, prepared)
		}
	}

	if r.kube != nil {
		if err := wait.Poll(ctx, wait.Every, r.nodeCheck); err != nil {
			return r.withLeftovers(report.From(n.Name, "node-ready", kube.NodeLook(n.Name), err), prepared)
		}
	}

	if err := r.unprepareKubeChecked(ctx, prepared); err != nil {
		return err
	}

	r.pods = nil // a boot renders every pod anew: the ones Talos serves now are the ones

	return r.healthy(ctx)
}

// notRebooted is a failure before the machine was asked to reboot. With nothing pending, Kubernetes is put back
// (unprepareKube). With a change the machine's next boot brings (a staged config, a Talos installed or being
// installed), the drain stays as it is: that boot may come from anything (a power cut, a person's reboot), and
// it must find the node drained, Ceph's noout set and Argo CD paused, as our own reboot would. The next run of
// the step finds the machine not yet as configured and goes through the disruption again (a Node it left
// cordoned is its own: the mark), or, if that boot came first, finds it done and puts Kubernetes back.
func (r *applyRun) notRebooted(p prepared, pending string, cause error) error {
	if pending == "" {
		return r.unprepareKube(p, cause)
	}

	var f *report.Failure
	if errors.As(cause, &f) {
		f.Detail += fmt.Sprintf("; %s takes effect at the machine's next boot, whatever reboots it, so it is left drained until `pulumi up` reboots it", pending)
	}

	return r.withLeftovers(cause, p)
}

// joinPending is what the next boot brings, the installed Talos first.
func joinPending(a, b string) string {
	if b == "" {
		return a
	}

	return a + " and " + b
}

// prepared is what prepareKube did, so it can be undone.
type prepared struct {
	hooks     bool
	afterOwed []string // the after hooks the Node's mark names, until they ran
	paused    []kube.Workload
	cordoned  bool
}

func (r *applyRun) prepareKube(ctx context.Context) (prepared, error) {
	var p prepared

	if r.kube == nil {
		return p, nil
	}

	n := r.n

	owed, err := r.markAfterHooks(ctx)
	if err != nil {
		return p, err
	}

	p.afterOwed = owed

	for _, job := range r.secrets.Before {
		p.hooks = true

		if err := r.kube.RunJob(ctx, n.Name, job); err != nil {
			return p, report.From(n.Name, "hook", "kubectl get jobs -A; kubectl logs job/NAME -n NAMESPACE", report.Wrap("hook", "kubectl get jobs -A", err))
		}
	}

	for _, w := range r.pauses {
		// Only what Pause found is resumed and reported as left paused: a workload not installed yet carries nothing.
		found, err := r.kube.Pause(ctx, n.Name, w)
		if found {
			p.paused = append(p.paused, w)
		}

		if err != nil {
			return p, report.From(n.Name, "pause", fmt.Sprintf("kubectl -n %s get %s %s", w.Namespace, strings.ToLower(w.Kind), w.Name), err)
		}
	}

	report.Progress(n.Name, "cordon")

	p.cordoned = true

	if err := r.kube.Cordon(ctx, n.Name, true); err != nil {
		return p, &report.Failure{Node: n.Name, Check: "cordon", Detail: report.FirstLine(err), Look: kube.NodeLook(n.Name)}
	}

	report.Progress(n.Name, "drain")

	if err := r.kube.Drain(ctx, n.Name, wait.Remaining(ctx)); err != nil {
		look := fmt.Sprintf("kubectl get pods -A -o wide --field-selector spec.nodeName=%s; kubectl get pdb -A", n.Name)

		return p, &report.Failure{Node: n.Name, Check: "drain", Detail: report.FirstLine(err), Look: look}
	}

	return p, nil
}

// unprepareKube undoes prepareKube after a failure before the reboot, and returns that failure
// (best effort: the failure being reported matters more; what the undo could not put back, it names).
func (r *applyRun) unprepareKube(p prepared, cause error) error {
	if r.kube == nil {
		return cause
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait.UndoTimeout)
	defer cancel()

	err := r.undo(ctx, p)
	if err == nil {
		return cause
	}

	report.Progress(r.n.Name, "could not undo: %s", err)

	var f *report.Failure
	if !errors.As(cause, &f) {
		return cause
	}

	// What is left: the after hooks still owed (read afresh: the undo may have used up its minute).
	rctx, rcancel := context.WithTimeout(context.Background(), wait.CallTimeout)
	defer rcancel()

	left := "the next run of this step finishes it"
	if owed, _ := r.owed(rctx); len(owed) > 0 { //nolint:errcheck // a note on a failure
		left = owedNote(r.n.Name, owed)
	}

	f.Detail += fmt.Sprintf(" (and putting Kubernetes back failed: %s; %s)", report.FirstLine(err), left)

	return cause
}

func (r *applyRun) unprepareKubeChecked(ctx context.Context, p prepared) error {
	if r.kube == nil {
		return nil
	}

	return r.undo(ctx, p)
}

func (r *applyRun) undo(ctx context.Context, p prepared) error {
	n := r.n

	if p.cordoned {
		if err := r.kube.Cordon(ctx, n.Name, false); err != nil {
			return &report.Failure{Node: n.Name, Check: "uncordon", Detail: report.FirstLine(err), Look: kube.NodeLook(n.Name)}
		}

		report.Progress(n.Name, "uncordoned")
	}

	// This disruption's own, and any an earlier run left owed.
	if err := r.runAfterHooks(ctx, p.hooks); err != nil {
		return err
	}

	for _, w := range p.paused {
		if err := r.kube.Resume(ctx, n.Name, w); err != nil {
			return &report.Failure{Node: n.Name, Check: "resume", Detail: fmt.Sprintf("%s: %s", w, report.FirstLine(err)), Look: fmt.Sprintf("kubectl -n %s get %s %s -o yaml", w.Namespace, strings.ToLower(w.Kind), w.Name)}
		}
	}

	return nil
}

// withLeftovers says what a failure after the reboot leaves behind for a person.
func (r *applyRun) withLeftovers(err error, p prepared) error {
	var f *report.Failure
	if !errors.As(err, &f) {
		return err
	}

	var left []string
	if p.cordoned {
		left = append(left, "the Node is left cordoned")
	}

	for _, w := range p.paused {
		left = append(left, fmt.Sprintf("%s is left scaled to 0 (replicas in its %s annotation)", w, kube.PausedAnnotation))
	}

	if len(p.afterOwed) > 0 {
		left = append(left, owedNote(r.n.Name, p.afterOwed))
	}

	if len(left) > 0 {
		f.Detail += " (" + strings.Join(left, "; ") + ")"
	}

	return f
}
