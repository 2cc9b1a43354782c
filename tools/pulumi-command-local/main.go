// Command pulumi-command-local runs a command as pulumi-command v1.2.1's local Command runs one, and
// ends its context as the engine does: a stand-in for the provider (the engine and the provider
// cannot run here), following its source line by line.
//
//	pulumi-command-local [--timeout SECONDS] [--stdin FILE] [--pid-file FILE] [--shell PATH] [--log FILE] -- COMMAND
//
// What it follows (pulumi-command provider/pkg/provider/local/commandOutputs.go at v1.2.1):
//   - :44-51  the command runs as `/bin/sh -c COMMAND` (--shell: Debian's /bin/sh is dash; a test may
//     name it where /bin/sh is another shell);
//   - :59     exec.CommandContext(ctx, ...), with no Cancel, no WaitDelay and no SysProcAttr: when ctx
//     ends, Go kills the shell alone with SIGKILL (Process.Kill) and Wait waits as long as it takes;
//   - :61-71  stdout and stderr are io.MultiWriters (not files), so Go copies each from a pipe and Wait
//     returns only once every holder of the pipes' write ends has closed them;
//   - :76, 81 the working folder is the provider's (the project folder), the environment its own;
//   - :97-98  stdin, when the resource has one, is a strings.Reader: copied into a pipe, then closed;
//   - :104-113 Start, Wait, and an error `<err>: running "<command>":\n<stdout and stderr>`;
//   - :56-71, 101-110 both streams also go, as they come, through an io.Pipe to util.LogOutput
//     (provider/pkg/provider/util/util.go:32-53), which sends the engine each line (bufio.Scanner) as a
//     status message: the resource's `logging` unset, as the program's steps leave it, logs stdout and
//     stderr (local/logging.go:27-32). That log is --log, a line to a line, written as each one comes:
//     what a person watching `pulumi up` sees while the step runs, and what a test waits on.
//
// The context ends as pulumi-go-provider v1.3.0's middleware/cancel/cancel.go ends it: at the
// resource's custom timeout (--timeout, :49 context.WithTimeout), or when the engine calls Cancel
// (:56-57, every in-flight call's context cancelled), which here is SIGUSR1: the engine's Ctrl-C
// (pkg/resource/deploy/deployment_executor.go:144 at v3.259.0, Host.SignalCancellation).
//
// Its stdout is one JSON object once Wait returned: the error (as the engine would report it, ""
// for none), the step's stdout and stderr, the shell's exit code (-1 when a signal ended it), and
// how long Wait took after the context ended (ms, -1 when it did not end).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lockedBuffer is what pulumi-command's util.ConcurrentWriter is: one buffer both streams write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.b.Write(p)
}

type result struct {
	Error    string `json:"error"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Exit     int    `json:"exit"`
	Signaled bool   `json:"signaled"`
	WaitedMs int64  `json:"waitedAfterCancelMs"`
}

func main() {
	timeout := flag.Float64("timeout", 0, "the resource's custom timeout, seconds (0: none)")
	stdinFile := flag.String("stdin", "", "a file holding the resource's stdin")
	pidFile := flag.String("pid-file", "", "write the shell's pid here once it started")
	shell := flag.String("shell", "/bin/sh", "the shell pulumi-command runs the command with")
	logFile := flag.String("log", "", "the engine's log: each line of the step's stdout and stderr as it comes (none: dropped)")

	flag.Parse()

	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pulumi-command-local [flags] -- COMMAND")
		os.Exit(2)
	}

	command := flag.Arg(0)

	ctx, cancel := context.WithCancel(context.Background())
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), time.Duration(*timeout*float64(time.Second)))
	}

	defer cancel()

	ended := make(chan time.Time, 1)
	context.AfterFunc(ctx, func() { ended <- time.Now() })

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)

	go func() {
		<-usr1
		cancel()
	}()

	var stdoutbuf, stderrbuf bytes.Buffer

	stdouterr := &lockedBuffer{}
	loggingReader, loggingWriter := io.Pipe()

	//nolint:gosec // the command is the test's
	cmd := exec.CommandContext(ctx, *shell, "-c", command)
	cmd.Stdout = io.MultiWriter(&stdoutbuf, stdouterr, loggingWriter)
	cmd.Stderr = io.MultiWriter(&stderrbuf, stdouterr, loggingWriter)

	logged := make(chan struct{})
	go logOutput(loggingReader, *logFile, logged)

	dir, err := os.Getwd()
	if err != nil {
		fail(err)
	}

	cmd.Dir = dir
	cmd.Env = os.Environ()

	if *stdinFile != "" {
		raw, err := os.ReadFile(*stdinFile)
		if err != nil {
			fail(err)
		}

		if len(raw) > 0 {
			cmd.Stdin = strings.NewReader(string(raw))
		}
	}

	err = cmd.Start()
	if err == nil {
		if *pidFile != "" {
			if werr := os.WriteFile(*pidFile, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o600); werr != nil {
				fail(werr)
			}
		}

		err = cmd.Wait()
	}

	loggingWriter.Close()
	<-logged

	out := result{Stdout: stdoutbuf.String(), Stderr: stderrbuf.String(), Exit: -1, WaitedMs: -1}

	if ctx.Err() != nil {
		// Wait returned now, however long after the context ended.
		out.WaitedMs = time.Since(<-ended).Milliseconds()
	}

	if cmd.ProcessState != nil {
		out.Exit = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			out.Signaled = ws.Signaled()
		}
	}

	if err != nil {
		out.Error = fmt.Errorf("%w: running %q:\n%s", err, command, stdouterr.b.String()).Error()
	}

	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// logOutput is util.LogOutput with the engine's log a file: each line written to it as the scanner reads it
// (no buffer of ours: an os.File write is the write(2) a reader of the file sees at once).
func logOutput(r io.Reader, path string, done chan<- struct{}) {
	defer close(done)

	sink := io.Discard

	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fail(err)
		}
		defer f.Close()

		sink = f
	}

	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		if _, err := fmt.Fprintln(sink, scanner.Text()); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pulumi-command-local:", err)
	os.Exit(1)
}
