// The machine files a boot wrote: read back after the reboot that took a config changing them, and on every health
// check of a node whose config has them.

package apply

import (
	"context"
	"fmt"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/config"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
)

// checkFiles reads the config's .machine.files on the node, so the step ends on the file the API server will read, not
// on the config alone: Talos writes them in the Boot sequence only (WriteUserFiles: v1alpha1_sequencer.go:246,
// v1alpha1_sequencer_tasks.go:505-600 at v1.14.0-rc.1), a create at all times, an overwrite over an existing file, an
// append after "\n" (:517-547). A path outside /var is written under /var and bind-mounted at the path (:570-582), so
// it reads at the path either way. From 1.14 the legacy CRI customization file is never written (:565-568: the CRI
// controller reads it from the config), so it is not read back there (criLive). before is the config the node ran
// before this step's boot: only the entries that differ from its own are read (the ones that boot had to write);
// nil reads every entry (a health check: a run killed after the reboot, or one whose check failed, is checked again).
// running is the Talos the node runs now. The content is never printed.
func (r *applyRun) checkFiles(ctx context.Context, before coreconfig.Provider, running string) error {
	if r.cfg == nil || r.cfg.Machine() == nil {
		return nil
	}

	files, err := r.cfg.Machine().Files()
	if err != nil {
		return &report.Failure{Node: r.n.Name, Check: "files", Detail: err.Error(), Look: r.talosLook("get machineconfig -o yaml")}
	}

	was := map[string]config.File{}

	if before != nil && before.Machine() != nil {
		old, err := before.Machine().Files()
		if err != nil {
			return &report.Failure{Node: r.n.Name, Check: "files", Detail: err.Error(), Look: r.talosLook("get machineconfig -o yaml")}
		}

		for _, f := range old {
			was[f.Path()] = f
		}
	}

	// The way out of a health check's failure: only a boot writes the files (a config already active is not applied again).
	fix := ""
	if before == nil {
		fix = fmt.Sprintf("; only a boot writes it: once the cause is fixed, reboot the node (talosctl -n %s reboot) and run pulumi up again", r.n.IP)
	}

	for _, f := range files {
		if criLive(running) && f.Path() == criCustomizationPath {
			continue
		}

		if o, ok := was[f.Path()]; ok && o.Op() == f.Op() && o.Content() == f.Content() && o.Permissions() == f.Permissions() {
			continue // unchanged by this step: its boot wrote nothing new there
		}

		look := r.talosLook("read " + f.Path())

		body, err := talos.ReadFile(ctx, r.c, f.Path())
		if err != nil {
			return &report.Failure{Node: r.n.Name, Check: "files", Detail: fmt.Sprintf("%s, which the config writes at boot, cannot be read: %s%s", f.Path(), talos.Message(err), fix), Look: look}
		}

		ok := body == f.Content()
		if f.Op() == "append" {
			ok = strings.HasSuffix(body, "\n"+f.Content())
		}

		if !ok {
			return &report.Failure{Node: r.n.Name, Check: "files", Detail: fmt.Sprintf("%s is not what the config writes there after the boot (its %s did not take effect)%s", f.Path(), f.Op(), fix), Look: look}
		}

		report.Progress(r.n.Name, "%s on disk as the config writes it", f.Path())
	}

	return nil
}
