package apply

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/talos"
	"github.com/iluvatar/upgrader/internal/wait"
)

// checkMaintenanceMachine refuses to hand the config (a control plane's holds every CA key of the
// cluster) to a machine in maintenance mode that is not the one the config is for: the MAC the
// config's LinkAliasConfig selects its NIC by must be the permanent MAC of one of the machine's
// links, which Talos lets a client without a certificate read in maintenance mode (LinkStatus is
// not sensitive: talos.PermanentMACs). Talos itself takes any config there: its maintenance-mode
// ApplyConfiguration validates the config and checks no selector against the machine's links
// (internal/app/maintenance/server.go:85-135 at v1.12.4; internal/app/machined/internal/server/
// v1alpha1/v1alpha1_server.go:173-224 at v1.13.0, where a reader may apply while the machine has no
// config, lines 178-183).
//
// Maintenance mode is unauthenticated by Talos's design (no client certificate either way), so this
// stops a wrong machine, not one that lies about its MAC. A config that names no MAC (a generic
// worker on DHCP) has nothing to check a machine against: it is handed over, and said. A machine
// whose links cannot be read, or report no permanent MAC, is refused while the config names one:
// which machine it is cannot be told, and that config's network would not come up on it anyway.
func (r *applyRun) checkMaintenanceMachine(ctx context.Context) error {
	n, ip := r.n, r.at.IP
	look := fmt.Sprintf("talosctl -n %s get links --insecure; the DHCP leases for %s; the MAC the inventory gives %s", ip, ip, n.Name)

	named := talos.ConfigMAC(r.cfg, n.IP)
	if named == "" {
		report.Progress(n.Name, "the config names no MAC (no LinkAliasConfig selects its NIC by mac(link.permanent_addr)): which machine takes it cannot be checked")

		return nil
	}

	var macs []string

	err := wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		c, err := talos.ConnectInsecure(ctx, r.at)
		if err == nil {
			defer c.Close() //nolint:errcheck

			macs, err = talos.PermanentMACs(ctx, c)
		}

		switch {
		case err == nil:
			return nil
		case talos.Transient(err):
			return report.Checkf("machine", look, "its links cannot be read yet: %s", talos.Message(err))
		default:
			return wait.Stop(report.Checkf("machine", look, "its links cannot be read: %s", talos.Message(err)))
		}
	})
	if err != nil {
		f := report.From(n.Name, "machine", look, err)
		f.Detail = fmt.Sprintf("which machine is in maintenance mode at %s cannot be read, and the config names %s: nothing was handed over (the config holds the cluster's keys): %s", ip, named, f.Detail)

		return f
	}

	switch {
	case slices.Contains(macs, named):
		report.Progress(n.Name, "in maintenance mode: a link's permanent MAC is %s, the one the config names", named)

		return nil
	case len(macs) == 0:
		return &report.Failure{
			Node:  n.Name,
			Check: "machine",
			Detail: fmt.Sprintf("the machine in maintenance mode at %s reports no permanent MAC on any link, and the config names %s: which machine it is cannot be told, "+
				"so nothing was handed over (the config holds the cluster's keys; its network would not come up there either)", ip, named),
			Look: look,
		}
	default:
		return &report.Failure{
			Node:  n.Name,
			Check: "machine",
			Detail: fmt.Sprintf("the machine in maintenance mode at %s is not the one the config is for: its links' permanent MACs are %s, the config names %s; "+
				"nothing was handed over (the config holds the cluster's keys)", ip, strings.Join(macs, ", "), named),
			Look: look,
		}
	}
}
