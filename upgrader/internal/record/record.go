// Package record is what `apply` found, printed as its only stdout line, and read back by the
// next update or delete of the same Pulumi step (pulumi-command's PULUMI_COMMAND_STDOUT).
package record

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
)

// Env is where pulumi-command hands an update or a delete the stdout its resource's last
// run printed (provider/pkg/provider/local/commandOutputs.go): apply's record, read back.
const Env = "PULUMI_COMMAND_STDOUT"

// Record is what `apply` found, printed as its only stdout line: where the node answered, which
// machine it is, and (a control plane) its etcd member. The next update or delete of the same
// Pulumi step reads it back from PULUMI_COMMAND_STDOUT.
type Record struct {
	Node       string `json:"node"`
	IP         string `json:"ip"`
	Machine    string `json:"machine,omitempty"`
	EtcdMember string `json:"etcdMember,omitempty"` // %016x, as etcd and talosctl print member IDs
}

// MemberID is the recorded etcd member ID (0 when none).
func (r *Record) MemberID() uint64 {
	if r == nil || r.EtcdMember == "" {
		return 0
	}

	id, err := strconv.ParseUint(r.EtcdMember, 16, 64)
	if err != nil {
		return 0
	}

	return id
}

// At is the node where the record last reached it (on the port this run uses).
func (r *Record) At(n input.Node) input.Node {
	return input.Node{Name: n.Name, IP: r.IP, Addr: net.JoinHostPort(r.IP, n.Port())}
}

// Moved: the record names another address than this run's.
func (r *Record) Moved(n input.Node) bool { return r != nil && r.IP != n.IP }

// Last is the record of this node's last apply, when PULUMI_COMMAND_STDOUT holds one. It
// only ever helps (an address, an identity, a member ID): one that does not parse, or is another
// node's, is said and ignored, never a failure.
func Last(n input.Node) *Record {
	text := strings.TrimSpace(os.Getenv(Env))
	if text == "" {
		return nil
	}

	lines := strings.Split(text, "\n")
	last := strings.TrimSpace(lines[len(lines)-1])

	var rec Record
	if err := json.Unmarshal([]byte(last), &rec); err != nil || rec.Node == "" || net.ParseIP(rec.IP) == nil {
		report.Progress(n.Name, "%s holds no record of an earlier apply: ignored", Env)

		return nil
	}

	if rec.Node != n.Name {
		report.Progress(n.Name, "%s holds the record of node %s, not this one: ignored", Env, rec.Node)

		return nil
	}

	if rec.EtcdMember != "" && rec.MemberID() == 0 {
		report.Progress(n.Name, "the record's etcd member %q is not a member ID: ignored", rec.EtcdMember)

		rec.EtcdMember = ""
	}

	said := []string{"last reached at " + rec.IP}
	if rec.Machine != "" {
		said = append(said, "machine "+rec.Machine)
	}

	if rec.EtcdMember != "" {
		said = append(said, "etcd member "+rec.EtcdMember)
	}

	report.Progress(n.Name, "the last apply recorded: %s", strings.Join(said, ", "))

	return &rec
}

// Print writes the record as stdout's one line (progress stays on stderr).
func Print(rec Record) error {
	out, err := json.Marshal(rec)
	if err != nil {
		return err
	}

	_, err = fmt.Fprintf(os.Stdout, "%s\n", out)

	return err
}
