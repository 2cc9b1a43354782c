// A path across Talos minors: the roll of one minor (--installer), and the rule that no upgrade skips a minor.

package apply

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/iluvatar/upgrader/internal/report"
)

// A path's roll (`apply --installer IMAGE`) brings the node to IMAGE's Talos and changes nothing else: its config stays
// the one it runs (the stack's own, with the machines' new settings, is applied by the node's own step once the path
// is done). Talos's migrations are tested between adjacent minors only, so the program rolls every machine one minor
// at a time, each minor's newest patch ("upgrade to the latest patch release of all intermediate minor releases": the
// Talos docs, upgrading-talos, "Supported upgrade paths"), though machinery would take a machine two minors at once
// (compatibility/talos114/talos114.go:16 at v1.14.1: MinimumHostUpgradeVersion 1.12.0).

// hopNeeded: the node runs an older Talos than the roll's. One that runs it already (an earlier run's roll, stopped
// after it) or a newer one (a machine upgraded by hand) is left as it is: a roll never takes a machine back.
func (r *applyRun) hopNeeded(running string) bool {
	if older(running, r.version) {
		report.Progress(r.n.Name, "a roll of the path to Talos %s: it runs %s", r.version, running)

		return true
	}

	report.Progress(r.n.Name, "a roll of the path to Talos %s: it runs %s already, which this roll leaves as it is", r.version, running)

	return false
}

// checkPath refuses an upgrade that skips a minor (1.12 to 1.14): Pulumi plans the path through the minors between
// (stacks.releases.talos_path) and each roll is a step of its own, so this is reached only when what the program
// last recorded is not what the machine runs (a machine that booted an older Talos from its disk, a run stopped
// before it recorded the path's end); nothing changes on the machine.
func (r *applyRun) checkPath(running string) error {
	from, okFrom := minorOf(running)
	to, okTo := minorOf(r.version)

	if okFrom && okTo && to < from {
		// Review M5 of issue #42: a path given up by setting talosVersion back leaves what the program recorded behind
		// what some machines run, and machinery installs a lower minor without a word (talos112.go:
		// MaximumHostDowngradeVersion 1.14.0). A minor is never rolled back here; nothing changes on the machine.
		return &report.Failure{
			Node:  r.n.Name,
			Check: "path",
			Detail: fmt.Sprintf("the node runs Talos %s, and its config installs %s, a lower minor: Iluvatar never rolls a minor back "+
				"(set arda.talosVersion to a v1.%d release, or later, and `pulumi up` takes every other machine forward to it); nothing was changed",
				running, r.version, from),
			Look: fmt.Sprintf("talosctl -n %s version", r.n.IP),
		}
	}

	if !okFrom || !okTo || to <= from+1 {
		return nil
	}

	next := fmt.Sprintf("v1.%d", from+1)

	return &report.Failure{
		Node:  r.n.Name,
		Check: "path",
		Detail: fmt.Sprintf("the node runs Talos %s, and Talos %s is %d minors ahead: Talos upgrades one minor at a time, so it goes to the newest %s first "+
			"(a `pulumi up` with arda.talosVersion moved plans that path for every machine; for this one alone: talosctl -n %s upgrade --image "+
			"factory.talos.dev/metal-installer/%s:%s.<newest patch>); nothing was changed", running, r.version, to-from, next, r.n.IP, r.schema, next),
		Look: fmt.Sprintf("talosctl -n %s version", r.n.IP),
	}
}

// release is vX.Y.Z as three numbers (a pre-release or build suffix ignored); nil when it is not one.
func release(version string) []int {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) != 3 {
		return nil
	}

	parts[2], _, _ = strings.Cut(parts[2], "-")
	parts[2], _, _ = strings.Cut(parts[2], "+")
	out := make([]int, 3)

	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}

		out[i] = n
	}

	return out
}

// older: release a comes before release b (false when either is not a release).
func older(a, b string) bool {
	x, y := release(a), release(b)
	if x == nil || y == nil {
		return false
	}

	for i := range 3 {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}

	return false
}
