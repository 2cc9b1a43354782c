package main

import (
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/kernel"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// SchematicSpec is what Image Factory holds for one schematic ID, as far as a node's boot shows it.
type SchematicSpec struct {
	// ExtraKernelArgs: the schematic's customization.extraKernelArgs. The factory builds them into the
	// schematic's installer when the Talos version has the unified installer (image-factory v1.0.3
	// internal/profile/profile.go:459-462; quirks.SupportsUnifiedInstaller, Talos 1.10 and later), so a node
	// boots with them once it installed or upgraded to that installer, and not before.
	ExtraKernelArgs []string `json:"extraKernelArgs,omitempty"`
}

// cmdline is the kernel command line a node booted with: what the imager builds for its installer, the
// platform's argument, the kernel's defaults, then the schematic's extra arguments after them (Talos v1.12.4
// pkg/imager/imager.go:333-418). The overwrite of `console` and `talos.platform` and the deletion of negated
// arguments that procfs applies there (imager.go:413-418) are not modelled: no test relies on them.
// Only what an installer carries counts: machine.install.extraKernelArgs is not read here, as a running
// Talos applies a machine.install change without a reboot and no installer runs for it
// (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go:145,172).
func (c *Cluster) cmdline(n *Node) string {
	args := append([]string{"talos.platform=metal"}, kernel.DefaultArgs(quirks.New(n.version))...)
	if spec, ok := c.sc.Factory[n.schematic]; ok {
		args = append(args, spec.ExtraKernelArgs...)
	}

	return strings.Join(args, " ")
}

// writeCmdline publishes /proc/cmdline as Talos does, the KernelCmdline resource runtime/cmdline
// (internal/app/machined/pkg/controllers/runtime/kernel_cmdline.go:47-70 at v1.12.4).
func (n *Node) writeCmdline() error {
	r := runtime.NewKernelCmdline()
	r.TypedSpec().Cmdline = n.c.cmdline(n)

	return put(n.st, r)
}
