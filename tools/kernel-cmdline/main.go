// Command kernel-cmdline merges kernel arguments as Talos's imager merges a schematic's extra kernel
// arguments into the defaults: go-procfs v0.1.2 (the version Talos v1.12.4's go.mod pins) Cmdline's
// AppendAll with the imager's options (pkg/imager/imager.go:413-418 at v1.12.4):
// WithOverwriteArgs("console"), WithOverwriteArgs("talos.platform") (constants.KernelParamPlatform) and
// WithDeleteNegatedArgs(). plans/netboot/cmdline.py is the port the program runs; the tests hold the two equal.
//
// Request on stdin: {"cases": [{"base": "<a kernel command line>", "extra": ["<arg>", ...]}, ...]}.
// Answer on stdout: {"lines": ["<the merged command line>", ...]}, in the same order.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/siderolabs/go-procfs/procfs"
)

type request struct {
	Cases []struct {
		Base  string   `json:"base"`
		Extra []string `json:"extra"`
	} `json:"cases"`
}

func main() {
	var req request

	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()

	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "kernel-cmdline: reading the request: %s\n", err)
		os.Exit(2)
	}

	lines := make([]string, 0, len(req.Cases))

	for _, c := range req.Cases {
		cmdline := procfs.NewCmdline(c.Base)

		if err := cmdline.AppendAll(
			c.Extra,
			procfs.WithOverwriteArgs("console"),
			procfs.WithOverwriteArgs("talos.platform"),
			procfs.WithDeleteNegatedArgs(),
		); err != nil {
			fmt.Fprintf(os.Stderr, "kernel-cmdline: %s\n", err)
			os.Exit(1)
		}

		lines = append(lines, cmdline.String())
	}

	if err := json.NewEncoder(os.Stdout).Encode(map[string][]string{"lines": lines}); err != nil {
		fmt.Fprintf(os.Stderr, "kernel-cmdline: writing the answer: %s\n", err)
		os.Exit(2)
	}
}
