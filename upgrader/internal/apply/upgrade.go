// The Talos upgrade and the reboot: the installer run, the new boot waited for, the version checked.

package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// upgrade installs the new Talos: LifecycleService on Talos 1.13+ (install only, then our reboot),
// the legacy MachineService.Upgrade before (which reboots by itself). On a failure, installed names
// the Talos the machine's next boot may bring ("" when none: the installer said it failed, or never ran).
func (r *applyRun) upgrade(ctx context.Context) (installed string, err error) {
	n := r.n
	look := r.talosLook("upgrade --image " + r.image)

	if r.lifecycle {
		report.Progress(n.Name, "upgrading to %s (LifecycleService)", r.version)

		running, err := r.lifecycleUpgrade(ctx)
		if status.Code(err) != codes.Unimplemented {
			if err != nil {
				f := &report.Failure{Node: n.Name, Check: "upgrade", Detail: err.Error(), Look: look}
				if running {
					return fmt.Sprintf("Talos %s (if the installer finishes)", r.version), f
				}

				return "", f
			}

			report.Progress(n.Name, "installed; rebooting into %s", r.version)

			return fmt.Sprintf("Talos %s (installed)", r.version), r.reboot(ctx)
		}

		report.Progress(n.Name, "LifecycleService is not served: the legacy upgrade API then")
	}

	report.Progress(n.Name, "upgrading to %s (legacy MachineService.Upgrade, which reboots on its own)", r.version)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	if _, err := r.c.UpgradeWithOptions(cctx, client.WithUpgradeImage(r.image), client.WithUpgradeRebootMode(machineapi.UpgradeRequest_DEFAULT)); err != nil { //nolint:staticcheck // the Talos 1.12 API
		return "", &report.Failure{Node: n.Name, Check: "upgrade", Detail: talos.Message(err), Look: look}
	}

	return "", nil
}

// installing is Talos 1.13's answer while another Upgrade or Install holds LifecycleService's lock
// (internal/app/lifecycle/lifecycle.go:156-157 at v1.13.0): a stopped run's installer, still running.
const installing = "another installation/upgrade is already in progress"

// lifecycleUpgrade runs the installer through LifecycleService.Upgrade. running says, on a failure, that
// the installer may still run on the machine and finish: Talos runs it on the stream's context only until
// task.Start, then waits for it on a context of its own (internal/app/lifecycle/container.go:165,181 at
// v1.13.0), so a stream that ends without the installer's exit code (our signal or --timeout, the
// connection lost) leaves it running, and an installer that finishes makes the new Talos the next boot's
// (sd-boot's default entry: internal/app/machined/pkg/runtime/v1alpha1/bootloader/sdboot/sdboot.go:399-400). An installer already
// running (a stopped run's) is waited for, then run again: it installs the same image.
func (r *applyRun) lifecycleUpgrade(ctx context.Context) (running bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	waited := false

	for {
		exit, err := r.runInstaller(cctx)
		if err == nil {
			if exit != 0 {
				return false, fmt.Errorf("the installer exited with %d; nothing is staged, the node keeps running %s", exit, r.version)
			}

			return false, nil
		}

		switch st := status.Code(err); {
		case st == codes.Unimplemented:
			return false, err
		case st == codes.FailedPrecondition && strings.Contains(talos.Message(err), installing):
			if !waited {
				report.Progress(r.n.Name, "an installer is already running on the machine (a stopped run's): waiting for it to end, then installing again")

				waited = true
			}

			select {
			case <-cctx.Done():
				return true, fmt.Errorf("stopped while an earlier installer still ran on the machine: %w", context.Cause(cctx))
			case <-time.After(wait.Every):
			}
		case talos.Transient(err) || cctx.Err() != nil:
			why := talos.Message(err)
			if cctx.Err() != nil {
				why = "stopped: " + context.Cause(cctx).Error()
			}

			return true, fmt.Errorf("%s, before the installer's exit code: it may be running on the machine, which runs an installer it started to its end whatever the client does", why)
		default:
			return false, errors.New(talos.Message(err))
		}
	}
}

// runInstaller is one LifecycleService.Upgrade stream: the installer's exit code, or why there is none.
func (r *applyRun) runInstaller(ctx context.Context) (int32, error) {
	stream, err := r.c.LifecycleClient.Upgrade(ctx, &machineapi.LifecycleServiceUpgradeRequest{
		Containerd: talos.SystemContainerd(),
		Source:     &machineapi.InstallArtifactsSource{ImageName: r.image},
	})
	if err != nil {
		return 0, err
	}

	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, status.Error(codes.Unavailable, "the installer's stream ended without an exit code")
		}

		if err != nil {
			return 0, err
		}

		switch p := msg.GetProgress().GetResponse().(type) {
		case *machineapi.LifecycleServiceInstallProgress_Message:
			report.Progress(r.n.Name, "installer: %s", strings.TrimSpace(p.Message))
		case *machineapi.LifecycleServiceInstallProgress_ExitCode:
			return p.ExitCode, nil
		}
	}
}

// reboot asks for a reboot; an answer lost because the node went down at once is no failure
// (the boot ID tells). A call ended by our own stop (a signal, the step's --timeout) is one: Talos
// may never have been asked.
func (r *applyRun) reboot(ctx context.Context) error {
	cctx, cancel := wait.Call(ctx)
	defer cancel()

	err := r.c.Reboot(cctx)
	if err != nil && ctx.Err() != nil {
		return &report.Failure{Node: r.n.Name, Check: "reboot", Detail: fmt.Sprintf("stopped (%s) before Talos answered the reboot: it may never have been asked", context.Cause(ctx)), Look: r.talosLook("reboot")}
	}

	if err != nil && !talos.Transient(err) {
		return &report.Failure{Node: r.n.Name, Check: "reboot", Detail: talos.Message(err), Look: r.talosLook("reboot")}
	}

	return nil
}

// waitReboot waits for a new boot ID (talosctl's BootIDChangedPostCheckFn); a node that comes
// back trusting no client certificate came back in maintenance mode, which no wait fixes.
func (r *applyRun) waitReboot(ctx context.Context, before string) error {
	n := r.n
	look := fmt.Sprintf("talosctl -n %s dmesg; the machine's console", n.IP)
	down := false
	start := time.Now()

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		id, err := talos.BootID(ctx, r.c)
		if err != nil {
			if !down {
				report.Progress(n.Name, "down")

				down = true
			}

			if strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "handshake") {
				if s, _ := r.t.Classify(ctx, r.at); s == talos.Maintenance { //nolint:errcheck
					return wait.Stop(report.Checkf("reboot", fmt.Sprintf("talosctl -n %s get machinestatus --insecure", n.IP), "the node came back in maintenance mode (no config: its disk was wiped or the install failed)"))
				}
			}

			return report.Checkf("reboot", look, "the node did not come back (down for %s; last: %s)", time.Since(start).Round(time.Second), talos.Message(err))
		}

		if id == before {
			return report.Checkf("reboot", look, "the node has not rebooted (boot ID unchanged)")
		}

		return nil
	})
	if err != nil {
		return report.From(n.Name, "reboot", look, err)
	}

	report.Progress(n.Name, "back up (new boot ID) after %s", time.Since(start).Round(100*time.Millisecond))

	return nil
}

// waitRunning waits for MachineStatus running and ready once etcd is bootstrapped (ready in all but its
// Node while no CNI runs: machineReady).
func (r *applyRun) waitRunning(ctx context.Context) error {
	look := r.talosLook("get machinestatus")
	butNode := false

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		ms, err := talos.MachineStatus(ctx, r.c)
		if err != nil {
			return report.Checkf("machine-status", look, "%s", talos.Message(err))
		}

		butNode, err = r.machineReady(ctx, ms)

		return err
	})
	if err != nil {
		return report.From(r.n.Name, "machine-status", look, err)
	}

	if butNode {
		report.Progress(r.n.Name, "running, and ready but for its Node (no CNI yet)")
	} else {
		report.Progress(r.n.Name, "running and ready")
	}

	return nil
}

// checkVersion is what talosctl never does: the node runs the version and schematic it was given.
func (r *applyRun) checkVersion(ctx context.Context) error {
	look := r.talosLook("version; talosctl -n " + r.n.IP + " get extensions")

	running, err := talos.Version(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: talos.Message(err), Look: look}
	}

	sch, err := talos.Schematic(ctx, r.c)
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: talos.Message(err), Look: look}
	}

	if running != r.version {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs Talos %s after the upgrade, not %s (the new image did not boot)", running, r.version), Look: look}
	}

	if sch != r.schema {
		return &report.Failure{Node: r.n.Name, Check: "version", Detail: fmt.Sprintf("runs schematic %s after the upgrade, not %s", orNone(sch), orNone(r.schema)), Look: look}
	}

	report.Progress(r.n.Name, "runs Talos %s, schematic %s, as configured", running, orNone(sch))

	return nil
}
