package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// usageError is a bad argument or a bad stdin: exit 2, nothing was touched.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

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

func fail(node, check, look string, format string, args ...any) *Failure {
	return &Failure{Node: node, Check: check, Detail: fmt.Sprintf(format, args...), Look: look}
}

var progressMu sync.Mutex

// progress is one line on stderr: `upgrader: <node>: <what>`.
func progress(node, format string, args ...any) {
	progressMu.Lock()
	defer progressMu.Unlock()

	fmt.Fprintf(os.Stderr, "upgrader: %s: %s\n", node, fmt.Sprintf(format, args...))
}

// Node is one NAME=IP argument (IP may carry a port; Talos's apid port 50000 otherwise).
type Node struct {
	Name string
	IP   string
	Addr string // IP:port, what the Talos client dials
}

var nameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

const apidPort = "50000"

func parseNode(value string) (Node, error) {
	name, addr, ok := strings.Cut(value, "=")
	if !ok || !nameRe.MatchString(name) {
		return Node{}, fmt.Errorf("%q is not NAME=IP", value)
	}

	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, apidPort
	}

	if net.ParseIP(host) == nil {
		return Node{}, fmt.Errorf("%q: %q is not an IP address", value, host)
	}

	return Node{Name: name, IP: host, Addr: net.JoinHostPort(host, port)}, nil
}

// port is the Talos API port a node argument used: the other members of its cluster listen on it too.
func (n Node) port() string {
	_, port, _ := net.SplitHostPort(n.Addr)

	return port
}

type nodeList []Node

func (l *nodeList) String() string { return fmt.Sprint(*l) }

func (l *nodeList) Set(v string) error {
	n, err := parseNode(v)
	if err != nil {
		return err
	}

	for _, existing := range *l {
		if existing.Name == n.Name {
			return fmt.Errorf("node %s given twice", n.Name)
		}
	}

	*l = append(*l, n)

	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// flags is one command's flag set: parse errors and stray arguments are usage errors.
type flags struct {
	*flag.FlagSet
	name string
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	return &flags{FlagSet: fs, name: name}
}

func (f *flags) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.SetOutput(os.Stderr)
			f.PrintDefaults()
		}

		return usagef("%s", err)
	}

	if f.NArg() > 0 {
		return usagef("unexpected argument %q", f.Arg(0))
	}

	return nil
}

func (f *flags) timeout() *time.Duration {
	return f.Duration("timeout", 0, "the longest this command may wait, e.g. 10m (required)")
}

func requireTimeout(d time.Duration) error {
	if d <= 0 {
		return usagef("--timeout is required (a duration such as 15m)")
	}

	return nil
}

func requireOne(nodes nodeList, flag string) (Node, error) {
	if len(nodes) != 1 {
		return Node{}, usagef("give exactly one %s NAME=IP", flag)
	}

	return nodes[0], nil
}

// Secrets is stdin: one JSON object, only what the command needs. Nothing in it is ever printed.
type Secrets struct {
	Talosconfig   string            `json:"talosconfig"`
	Kubeconfig    string            `json:"kubeconfig"`
	MachineConfig string            `json:"machineConfig"`
	Manifests     []json.RawMessage `json:"manifests"`
	Hooks         struct {
		Before []json.RawMessage `json:"before"`
		After  []json.RawMessage `json:"after"`
	} `json:"hooks"`
}

// readSecrets reads stdin; an empty stdin is an empty object. Unknown keys are a usage error (a typo would drop a secret).
func readSecrets(stdin io.Reader) (*Secrets, error) {
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return nil, usagef("reading stdin: %s", err)
	}

	var s Secrets

	if len(bytes.TrimSpace(raw)) == 0 {
		return &s, nil
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()

	if err := dec.Decode(&s); err != nil {
		// The decoder's message never quotes the values, only where and which key.
		return nil, usagef("stdin is not the secrets JSON object: %s", err)
	}

	return &s, nil
}

func (s *Secrets) require(what ...string) error {
	for _, w := range what {
		var empty bool

		switch w {
		case "talosconfig":
			empty = s.Talosconfig == ""
		case "kubeconfig":
			empty = s.Kubeconfig == ""
		case "machineConfig":
			empty = s.MachineConfig == ""
		case "manifests":
			empty = len(s.Manifests) == 0
		}

		if empty {
			return usagef("stdin: %q is required", w)
		}
	}

	return nil
}
