// Package input is what a command is given: its flags (NAME=IP nodes, a required --timeout), and
// the secrets on stdin as one JSON object. Anything wrong there is a usage error: exit 2, nothing
// was contacted.
package input

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
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

// UsageError is a bad argument or a bad stdin: exit 2, nothing was touched.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef is a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Node is one NAME=IP argument (IP may carry a port; Talos's apid port 50000 otherwise).
type Node struct {
	Name string
	IP   string
	Addr string // IP:port, what the Talos client dials
}

var nameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// ValidName: name is a node name (a hostname, which is also its Kubernetes Node's name).
func ValidName(name string) bool { return nameRe.MatchString(name) }

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

// Port is the Talos API port a node argument used: the other members of its cluster listen on it too.
func (n Node) Port() string {
	_, port, _ := net.SplitHostPort(n.Addr)

	return port
}

// NodeList is a repeatable NAME=IP flag; a name given twice is refused.
type NodeList []Node

func (l *NodeList) String() string { return fmt.Sprint(*l) }

// Set adds one NAME=IP.
func (l *NodeList) Set(v string) error {
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

// StringList is a repeatable flag.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set adds one value.
func (l *StringList) Set(v string) error { *l = append(*l, v); return nil }

// Flags is one command's flag set: parse errors and stray arguments are usage errors.
type Flags struct {
	*flag.FlagSet
	name string
}

// NewFlags is the flag set of the command name.
func NewFlags(name string) *Flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	return &Flags{FlagSet: fs, name: name}
}

// ParseArgs parses the command's arguments: flags only, nothing after them.
func (f *Flags) ParseArgs(args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.SetOutput(os.Stderr)
			f.PrintDefaults()
		}

		return Usagef("%s", err)
	}

	if f.NArg() > 0 {
		return Usagef("unexpected argument %q", f.Arg(0))
	}

	return nil
}

// Timeout is the command's --timeout flag.
func (f *Flags) Timeout() *time.Duration {
	return f.Duration("timeout", 0, "the longest this command may wait, e.g. 10m (required)")
}

// RequireTimeout: --timeout was given.
func RequireTimeout(d time.Duration) error {
	if d <= 0 {
		return Usagef("--timeout is required (a duration such as 15m)")
	}

	return nil
}

// RequireOne is the one node a flag must name.
func RequireOne(nodes NodeList, flag string) (Node, error) {
	if len(nodes) != 1 {
		return Node{}, Usagef("give exactly one %s NAME=IP", flag)
	}

	return nodes[0], nil
}

// Secrets is stdin: one JSON object, only what the command needs. Nothing in it is ever printed.
//
// This type and ReadSecrets are the one description of stdin: what the program sends is checked
// against them (`upgrader check-input`), and every command reads its stdin through them.
type Secrets struct {
	Talosconfig   string            `json:"talosconfig"`
	Kubeconfig    string            `json:"kubeconfig"`
	MachineConfig string            `json:"machineConfig"`
	Manifests     []json.RawMessage `json:"manifests"` // each a JSON object or a YAML string
	Hooks         struct {
		Before hookList `json:"before"` // each a Job, as a JSON object or a YAML string
		After  hookList `json:"after"`
	} `json:"hooks"`
	// MachineConfigs are several nodes' configs, by node name (kubernetes-upgrade).
	MachineConfigs map[string]string `json:"machineConfigs"`

	// What ReadSecrets decoded the manifests and hooks into: a command never meets one it cannot use.
	Objects []map[string]any `json:"-"`
	Before  []batchv1.Job    `json:"-"`
	After   []batchv1.Job    `json:"-"`
}

// hookList is a list of hooks; one Job object alone is read as a list of one. The program sent each
// hook as one Job until 2026-11-25 (issue #38), and a step whose create failed keeps that stdin in
// Pulumi's state: pulumi-command v1.2.1 runs a delete with the state's stdin (local/commandController.go,
// Delete reads req.State), so a machine removed since must still be reset with it.
type hookList []json.RawMessage

func (l *hookList) UnmarshalJSON(raw []byte) error {
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '{' {
		*l = hookList{json.RawMessage(trimmed)}

		return nil
	}

	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return err
	}

	*l = list

	return nil
}

// ReadSecrets reads stdin; an empty stdin is an empty object. Unknown keys are a usage error (a typo
// would drop a secret), and so is a manifest or a hook of another shape than the command runs.
func ReadSecrets(stdin io.Reader) (*Secrets, error) {
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return nil, Usagef("reading stdin: %s", err)
	}

	var s Secrets

	if len(bytes.TrimSpace(raw)) == 0 {
		return &s, nil
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()

	if err := dec.Decode(&s); err != nil {
		// The decoder's message never quotes the values, only where and which key.
		return nil, Usagef("stdin is not the secrets JSON object: %s", err)
	}

	for i, raw := range s.Manifests {
		obj, err := decodeManifest(raw)
		if err != nil {
			return nil, Usagef("stdin: manifest %d: %s", i, err)
		}

		s.Objects = append(s.Objects, obj)
	}

	for _, hooks := range []struct {
		key  string
		raw  hookList
		jobs *[]batchv1.Job
	}{{"before", s.Hooks.Before, &s.Before}, {"after", s.Hooks.After, &s.After}} {
		for i, raw := range hooks.raw {
			job, err := hookJob(raw)
			if err != nil {
				return nil, Usagef("stdin: hooks.%s[%d] %s", hooks.key, i, err)
			}

			*hooks.jobs = append(*hooks.jobs, job)
		}
	}

	return &s, nil
}

// Require: each key is on stdin, not empty.
func (s *Secrets) Require(what ...string) error {
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
		case "machineConfigs":
			empty = len(s.MachineConfigs) == 0
		}

		if empty {
			return Usagef("stdin: %q is required", w)
		}
	}

	return nil
}
