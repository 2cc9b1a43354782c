package talos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// ParseBootstrap reads bootstrap's arguments and stdin, contacting nothing; what it returns runs it.
//
// bootstrap bootstraps etcd on a control plane only when no cluster can exist: Talos's own guard is
// that node's data directory alone (Bootstrap stops an etcd that is still joining and starts a new
// one-member cluster), so every control plane in the talosconfig is asked first, right before each
// call. --no-new-cluster (what the Pulumi step's update runs) never starts one.
func ParseBootstrap(args []string, stdin io.Reader) (func(context.Context) error, error) {
	f := input.NewFlags("bootstrap")

	var nodes input.NodeList

	f.Var(&nodes, "node", "NAME=IP of the control plane to bootstrap")
	noNew := f.Bool("no-new-cluster", false, "never start a new etcd cluster: succeed when one exists, fail when every control plane waits for one")
	timeout := f.Timeout()

	if err := f.ParseArgs(args); err != nil {
		return nil, err
	}

	if err := input.RequireTimeout(*timeout); err != nil {
		return nil, err
	}

	n, err := input.RequireOne(nodes, "--node")
	if err != nil {
		return nil, err
	}

	s, err := ReadStdin(stdin)
	if err != nil {
		return nil, err
	}

	return func(ctx context.Context) error { return runBootstrap(ctx, s, n, *noNew, *timeout) }, nil
}

// EtcdDataPath is etcd's data directory on a control plane (Talos constants.EtcdDataPath), the one
// Bootstrap refuses to bootstrap over when it is not empty.
const EtcdDataPath = "/var/lib/etcd"

// surveyCall bounds each question of a round: etcd's client retries an endpoint where nothing
// listens until its deadline, so a member list asked of a node whose etcd is not running answers
// only then, and the questions after it must still be asked within the round.
const surveyCall = 3 * time.Second

// etcdKind is what a control plane's answers say of its etcd.
type etcdKind int

const (
	// etcdUnknown: it does not answer, or nothing it says tells.
	etcdUnknown etcdKind = iota
	// etcdNone: no etcd data: maintenance mode (no config), or an etcd that does not run (Preparing:
	// pulling its image, waiting to join or for a bootstrap; Failed: it gave up joining) over an empty
	// data directory (classifyEtcd).
	etcdNone
	// etcdHeld: its etcd runs, or its data directory is not empty: it holds a cluster's data.
	etcdHeld
	// etcdAnswers: its member list answers (itself, or through the control planes it discovered).
	etcdAnswers
)

// etcdSeen is what one control plane said of its etcd in one round.
type etcdSeen struct {
	node       input.Node
	configured bool // answered the talosconfig's client certificate
	kind       etcdKind
	members    []*machineapi.EtcdMember
	detail     string // what it said, as a person reads it
	notCP      error  // its answer that it is not a control plane
}

// runBootstrap is bootstrap: the talosconfig read, then a round every wait.Every until one decides.
func runBootstrap(ctx context.Context, s *input.Secrets, n input.Node, noNew bool, timeout time.Duration) error {
	t, err := New(s)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	others := t.OtherControlPlanes(n)
	look := fmt.Sprintf("talosctl -n %s service etcd; talosctl -n %s logs etcd; talosctl -n %s dmesg", n.IP, n.IP, n.IP)

	names := []string{n.Name}
	for _, o := range others {
		names = append(names, o.Name)
	}

	report.Progress(n.Name, "bootstrap: asking every control plane about etcd first (%s)", strings.Join(names, ", "))

	said := ""
	say := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); msg != said {
			report.Progress(n.Name, "%s", msg)

			said = msg
		}
	}

	err = wait.Poll(ctx, wait.Every, func(ctx context.Context) error {
		seen := t.surveyEtcd(ctx, append([]input.Node{n}, others...))
		v := decideBootstrap(seen[0], seen[1:], noNew)

		switch {
		case v.refuse != nil:
			return wait.Stop(report.Checkf("bootstrap", v.look, "%s", v.refuse))
		case v.done != "":
			say("%s", v.done)

			return nil
		case v.wait != "":
			say("%s", v.wait)

			return report.Checkf("bootstrap", v.look, "%s", v.wait)
		}

		return callBootstrap(ctx, t, n, look, say)
	})
	if err != nil {
		return report.From(n.Name, "bootstrap", look, err)
	}

	return nil
}

// callBootstrap is one Bootstrap call, made right after a round found no cluster anywhere.
func callBootstrap(ctx context.Context, t *Talosconfig, n input.Node, look string, say func(string, ...any)) error {
	c, err := t.Connect(ctx, n)
	if err != nil {
		return report.Checkf("bootstrap", look, "%s", Message(err))
	}

	defer c.Close() //nolint:errcheck

	cctx, cancel := wait.Call(ctx)
	defer cancel()

	err = c.Bootstrap(cctx, &machineapi.BootstrapRequest{})
	code := status.Code(err)

	switch {
	case err == nil:
		report.Progress(n.Name, "etcd bootstrapped")

		return nil
	case code == codes.AlreadyExists || strings.Contains(err.Error(), "etcd data directory is not empty"):
		report.Progress(n.Name, "already bootstrapped (%s): nothing to do", status.Convert(err).Message())

		return nil
	case code == codes.InvalidArgument || code == codes.PermissionDenied || code == codes.Unauthenticated:
		return wait.Stop(report.Checkf("bootstrap", look, "%s", Message(err)))
	case code == codes.Unimplemented && strings.Contains(err.Error(), "control plane"):
		return wait.Stop(report.Checkf("bootstrap", look, "%s (is %s a control plane?)", Message(err), n.Name))
	}

	// Unavailable and DeadlineExceeded (down, rebooting), and FailedPrecondition (Talos: "bootstrap
	// is not available yet", "time is not in sync yet"): the node is not ready for it yet. The next
	// round asks every control plane again before the next call.
	say("not ready for the bootstrap yet: %s", Message(err))

	return report.Checkf("bootstrap", look, "%s", Message(err))
}

// bootstrapVerdict is what one round decides.
type bootstrapVerdict struct {
	done   string // a cluster exists (or the node holds it): success, no bootstrap
	wait   string // ask again next round
	refuse error  // fail now
	look   string // how a person looks at what the round saw
}

// decideBootstrap decides a round from what the node to bootstrap (target) and every other control
// plane said. A member list that answers, or etcd data held anywhere, means a cluster exists and no
// bootstrap may start another. Only when every other control plane is known to hold no etcd data
// (none not answering) does the target get its Bootstrap, and then only without noNew.
func decideBootstrap(target etcdSeen, others []etcdSeen, noNew bool) bootstrapVerdict {
	all := append([]etcdSeen{target}, others...)
	everyone := lookAt(all)

	if target.notCP != nil {
		return bootstrapVerdict{refuse: fmt.Errorf("%s (is %s a control plane?)", Message(target.notCP), target.node.Name), look: everyone}
	}

	for _, s := range all {
		if s.kind == etcdAnswers {
			return bootstrapVerdict{done: fmt.Sprintf("a cluster exists: %s answered etcd's member list (%s): not bootstrapping", s.node.Name, memberList(s.members))}
		}
	}

	for _, s := range all {
		if s.kind == etcdHeld {
			return bootstrapVerdict{done: fmt.Sprintf("a cluster exists: %s %s: not bootstrapping", s.node.Name, s.detail)}
		}
	}

	if !target.configured {
		return bootstrapVerdict{wait: "not ready for the bootstrap yet: " + target.detail, look: lookAt([]etcdSeen{target})}
	}

	var unknown []etcdSeen

	for _, s := range others {
		if s.kind == etcdUnknown {
			unknown = append(unknown, s)
		}
	}

	if len(unknown) > 0 {
		return bootstrapVerdict{wait: fmt.Sprintf("not bootstrapping while a control plane could hold etcd: %s", describe(unknown)), look: lookAt(unknown)}
	}

	if noNew {
		return bootstrapVerdict{
			refuse: fmt.Errorf("every control plane waits for a bootstrap (%s), and --no-new-cluster starts no etcd: this cluster's etcd data is gone with "+
				"their disks; restore it from a snapshot (talosctl -n %s bootstrap --recover-from=SNAPSHOT), see docs/day2.md#every-control-plane-reflashed",
				describe(all), target.node.IP),
			look: everyone,
		}
	}

	return bootstrapVerdict{}
}

func describe(seen []etcdSeen) string {
	var out []string
	for _, s := range seen {
		out = append(out, s.node.Name+" "+s.detail)
	}

	return strings.Join(out, "; ")
}

func lookAt(seen []etcdSeen) string {
	var ips []string
	for _, s := range seen {
		ips = append(ips, s.node.IP)
	}

	n := strings.Join(ips, ",")

	return fmt.Sprintf("talosctl -n %s service etcd; talosctl -n %s ls %s; talosctl -n %s etcd members", n, n, EtcdDataPath, n)
}

// memberList names the members as etcd lists them (an unstarted one by its ID).
func memberList(members []*machineapi.EtcdMember) string {
	var out []string

	for _, m := range members {
		if m.GetHostname() == "" {
			out = append(out, fmt.Sprintf("%016x, not started", m.GetId()))

			continue
		}

		out = append(out, m.GetHostname())
	}

	if len(out) == 0 {
		return "no members"
	}

	return strings.Join(out, ", ")
}

// surveyEtcd asks every node at once what its etcd is, each within a few bounded calls.
func (t *Talosconfig) surveyEtcd(ctx context.Context, nodes []input.Node) []etcdSeen {
	out := make([]etcdSeen, len(nodes))

	var wg sync.WaitGroup

	for i, n := range nodes {
		wg.Add(1)

		go func() {
			defer wg.Done()

			out[i] = t.askEtcd(ctx, n)
		}()
	}

	wg.Wait()

	return out
}

// askEtcd is what one control plane says, in what Talos reports (v1.12.4 and v1.13.0 alike):
//   - maintenance mode: no config, so no etcd service at all;
//   - EtcdMemberList answers only once an etcd it reaches (its own, or through the control planes it
//     discovered) has a leader;
//   - the etcd service is "Preparing" from the start of its PreFunc, through pulling its image and
//     waiting to join or for a bootstrap, until it runs (service_runner.go, Run), and "Failed" once it
//     gave up joining (classifyEtcd);
//   - its data directory, listed (MachineService.List), is what Bootstrap itself checks.
func (t *Talosconfig) askEtcd(ctx context.Context, n input.Node) etcdSeen {
	s := etcdSeen{node: n}

	cctx, cancel := context.WithTimeout(ctx, surveyCall)
	state, err := t.Classify(cctx, n)

	cancel()

	switch state {
	case Maintenance:
		s.kind, s.detail = etcdNone, "is in maintenance mode (no config: no etcd)"

		return s
	case Unreachable:
		s.detail = "does not answer (" + Message(err) + ")"

		return s
	}

	c, err := t.Connect(ctx, n)
	if err != nil {
		s.detail = "does not answer (" + Message(err) + ")"

		return s
	}

	defer c.Close() //nolint:errcheck

	s.configured = true

	mctx, cancel := context.WithTimeout(ctx, surveyCall)
	members, err := EtcdMembers(mctx, c)

	cancel()

	if err == nil {
		s.kind, s.members = etcdAnswers, members

		return s
	}

	if status.Code(err) == codes.Unimplemented && strings.Contains(err.Error(), "control plane") {
		s.kind, s.notCP, s.detail = etcdNone, err, "is not a control plane"

		return s
	}

	sctx, cancel := context.WithTimeout(ctx, surveyCall)
	service, serr := etcdService(sctx, c)

	cancel()

	dctx, cancel := context.WithTimeout(ctx, surveyCall)
	empty, derr := etcdDataEmpty(dctx, c)

	cancel()

	s.kind, s.detail = classifyEtcd(service, serr, empty, derr, Message(err))

	return s
}

// etcdService is the etcd service's state ("not loaded" when the node lists none).
func etcdService(ctx context.Context, c *client.Client) (string, error) {
	services, err := c.ServiceList(ctx)
	if err != nil {
		return "", err
	}

	for _, m := range services.GetMessages() {
		for _, s := range m.GetServices() {
			if s.GetId() == "etcd" {
				return s.GetState(), nil
			}
		}
	}

	return "not loaded", nil
}

// etcdDataEmpty lists etcd's data directory as `talosctl ls` does: the directory itself, then each
// entry in it (Talos's walker, not recursive).
func etcdDataEmpty(ctx context.Context, c *client.Client) (bool, error) {
	stream, err := c.LS(ctx, &machineapi.ListRequest{Root: EtcdDataPath})
	if err != nil {
		return false, err
	}

	entries := 0

	for {
		info, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return entries == 0, nil
		}

		if err != nil {
			return false, err
		}

		if info.GetError() != "" {
			return false, errors.New(info.GetError())
		}

		if info.GetRelativeName() != "." {
			entries++
		}
	}
}
