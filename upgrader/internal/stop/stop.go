// Package stop is what a signal does to a command, and the bound on its end.
//
// Under Pulumi the signal is SIGTERM, sent by the kernel when the shell pulumi-command ran the
// command in is killed (iluvatar/lifeline.py asks for it, PR_SET_PDEATHSIG): pulumi-command kills
// that shell with SIGKILL when the engine cancels the step (Ctrl-C) or its custom timeout ends
// (provider/pkg/provider/local/commandOutputs.go:59 at v1.2.1, exec.CommandContext with Go's default
// Cancel, Process.Kill), and then waits until every holder of the step's stdout and stderr has closed
// them: this process. SIGINT is the engine's own when it terminates (a second Ctrl-C,
// pkg/backend/cancellation_scope.go:113 at v3.259.0, closes the plugin host, pkg/engine/deployment.go:248-250),
// sent to the provider's whole process group, which the step's processes are in
// (sdk/go/common/resource/plugin/plugin.go:648, cmdutil.InterruptChildren: kill(-pid, SIGINT)), and a
// person's Ctrl-C when the upgrader runs in a terminal.
//
// The first signal ends every wait at once, as a failure (the context's cause names the signal).
// What a failure does still runs: before a reboot, putting back the drain, the hooks and the paused
// workloads, on its own bound (wait.UndoTimeout). The process then has Grace to end; past it, or at
// a second signal, it ends at once, saying what was cut short.
package stop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Grace bounds a command's end once a signal came: the undo before a reboot (wait.UndoTimeout), and
// one call in flight when it started (wait.CallTimeout).
const Grace = wait.UndoTimeout + wait.CallTimeout

// exitStopped is the exit code of a command ended at once: a failed check's (1).
const exitStopped = 1

// On is parent cancelled at the first of sigs. Its stop ends the watch (the command is done).
func On(parent context.Context, sigs ...os.Signal) (context.Context, func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)

	ctx, done := watch(parent, ch, Grace, os.Exit, os.Stderr)

	return ctx, func() {
		signal.Stop(ch)
		done()
	}
}

// watch is On's work, with the signals, the bound, the exit and the output given.
func watch(parent context.Context, ch <-chan os.Signal, grace time.Duration, exit func(int), out io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	finished := make(chan struct{})

	go func() {
		var first os.Signal

		select {
		case first = <-ch:
		case <-finished:
			return
		}

		fmt.Fprintf(out, "upgrader: -: %s: stopping: every wait ends now, as a failure; putting back a drain before a reboot may take up to %s, and the upgrader ends within %s\n", name(first), wait.UndoTimeout, grace)
		cancel(errors.New(name(first)))

		var why string

		select {
		case again := <-ch:
			why = fmt.Sprintf("a second signal (%s) after %s", name(again), name(first))
		case <-time.After(grace):
			why = fmt.Sprintf("still running %s after %s", grace, name(first))
		case <-finished:
			return
		}

		fmt.Fprintln(out, (&report.Failure{
			Node: "-", Check: "stop", Detail: why + ": ended at once, whatever it was doing (a drain it was putting back stays as it was)",
			Look: "the lines above; kubectl get nodes (a Node left cordoned is uncordoned by the next run)",
		}).Line())
		exit(exitStopped)
	}()

	return ctx, func() {
		close(finished)
		cancel(nil)
	}
}

// name is a signal as a person looks it up (kill -l, signal(7)).
func name(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}

	return s.String()
}
