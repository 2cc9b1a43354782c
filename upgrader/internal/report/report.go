// Package report is what the upgrader tells a person: a progress line on stderr for each step, and
// for a failed check one last line naming the node, the check, what was seen and how to look.
package report

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Failure is a failed check: which node, which check, what was seen, and how a person looks.
type Failure struct {
	Node   string
	Check  string
	Detail string
	Look   string
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %s: %s", f.Node, f.Check, f.Detail) }

// Line is the last line a failed command prints.
func (f *Failure) Line() string {
	detail := strings.Join(strings.Fields(f.Detail), " ") // one line, whatever the error's own newlines

	return fmt.Sprintf("upgrader: FAILED: %s: %s: %s; look with: %s", f.Node, f.Check, detail, f.Look)
}

var progressMu sync.Mutex

// Progress is one line on stderr: `upgrader: <node>: <what>`.
func Progress(node, format string, args ...any) {
	progressMu.Lock()
	defer progressMu.Unlock()

	fmt.Fprintf(os.Stderr, "upgrader: %s: %s\n", node, fmt.Sprintf(format, args...))
}

// FirstLine is an error's first line (client-go's and kubectl's run on).
func FirstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}

	return s
}

// Check is a failed step of a wait: which check (on which node, when not the command's own),
// and how a person looks at it.
type Check struct {
	Name string
	Look string
	Err  error
	Node string
}

func (c *Check) Error() string { return c.Err.Error() }
func (c *Check) Unwrap() error { return c.Err }

// Checkf is a Check whose error is formatted.
func Checkf(name, look string, format string, args ...any) *Check {
	return &Check{Name: name, Look: look, Err: fmt.Errorf(format, args...)}
}

// From turns a wait's error into the command's Failure: the last check still failing.
func From(node, defaultCheck, defaultLook string, err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}

	name, look := defaultCheck, defaultLook

	var c *Check
	if errors.As(err, &c) {
		name, look = c.Name, c.Look
		if c.Node != "" {
			node = c.Node
		}
	}

	return &Failure{Node: node, Check: name, Detail: err.Error(), Look: look}
}

// Wrap makes err a Check, unless it already is one.
func Wrap(name, look string, err error) error {
	var c *Check
	if errors.As(err, &c) {
		return err
	}

	return &Check{Name: name, Look: look, Err: err}
}
