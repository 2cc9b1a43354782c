// Package talos is the Talos API as the upgrader uses it: a client per node from the talosconfig on
// stdin, what a node runs and how it answers, its etcd, images, identity, and the commands that are
// Talos alone (bootstrap, probe, remove-member, etcd-snapshot).
package talos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/iluvatar/upgrader/internal/input"
	"github.com/iluvatar/upgrader/internal/report"
	"github.com/iluvatar/upgrader/internal/wait"
)

// Talosconfig is the talosconfig from stdin: one client per node, dialled at the node's own address.
type Talosconfig struct {
	cfg *clientconfig.Config
}

// New is the talosconfig on stdin (required), parsed: a usage error when it is not one.
func New(s *input.Secrets) (*Talosconfig, error) {
	if err := s.Require("talosconfig"); err != nil {
		return nil, err
	}

	cfg, err := clientconfig.FromString(s.Talosconfig)
	if err != nil {
		return nil, input.Usagef("stdin: talosconfig is not a talosconfig: %s", report.FirstLine(err))
	}

	if cfg.Context == "" || cfg.Contexts[cfg.Context] == nil {
		return nil, input.Usagef("stdin: talosconfig has no current context")
	}

	return &Talosconfig{cfg: cfg}, nil
}

// dialOptions make a reconnect to a rebooting node quick: gRPC's default backoff grows to 120 s.
func dialOptions() client.OptionFunc {
	return client.WithGRPCDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	}))
}

// Connect is a client for one node, authenticated by the talosconfig's client certificate.
func (t *Talosconfig) Connect(ctx context.Context, n input.Node) (*client.Client, error) {
	return client.New(ctx, client.WithConfig(t.cfg), client.WithEndpoints(n.Addr), dialOptions())
}

// ConnectEndpoints is a client for the talosconfig's own endpoints (as talosctl without -e).
func (t *Talosconfig) ConnectEndpoints(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, client.WithConfig(t.cfg), dialOptions())
}

// ConnectInsecure is what talosctl --insecure does: TLS without verifying, no client certificate
// (a node in maintenance mode serves a certificate of its own making).
func ConnectInsecure(ctx context.Context, n input.Node) (*client.Client, error) {
	return client.New(ctx, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(n.Addr), dialOptions()) //nolint:gosec
}

// Transient: the node is not answering (yet): down, rebooting, installing, or not trusting us yet.
func Transient(err error) bool {
	if err == nil {
		return false
	}

	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}

	switch status.Code(err) { //nolint:exhaustive
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return true
	}

	return false
}

// Message is an error as a person reads it: the status message without the "rpc error" noise.
func Message(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}

	return err.Error()
}

// Node states, as probe prints them.
const (
	Running     = "running"
	Maintenance = "maintenance"
	Unreachable = "unreachable"
)

// Classify asks a node who it is: it answers our client certificate (running, configured for
// this cluster), or only an insecure client (maintenance mode: no config yet), or nothing.
func (t *Talosconfig) Classify(ctx context.Context, n input.Node) (string, error) {
	var (
		wg                     sync.WaitGroup
		secureErr, insecureErr error
	)

	wg.Add(2)

	go func() {
		defer wg.Done()

		c, err := t.Connect(ctx, n)
		if err == nil {
			defer c.Close() //nolint:errcheck

			err = answers(ctx, c)
		}

		secureErr = err
	}()

	go func() {
		defer wg.Done()

		c, err := ConnectInsecure(ctx, n)
		if err == nil {
			defer c.Close() //nolint:errcheck

			err = answers(ctx, c)
		}

		insecureErr = err
	}()

	wg.Wait()

	// Any answer over mutual TLS (even a refusal by role) is a configured node of this cluster.
	if secureErr == nil || !Transient(secureErr) {
		return Running, nil
	}

	// Without a client certificate only maintenance mode answers: Talos 1.13 with a reader's
	// Version, Talos 1.12's maintenance service with "not implemented in maintenance mode".
	if insecureErr == nil || (status.Code(insecureErr) == codes.Unimplemented && strings.Contains(insecureErr.Error(), "maintenance")) {
		return Maintenance, nil
	}

	return Unreachable, secureErr
}

// answers is one Version call, bounded like every call (wait.Call). Nothing on the node ends a call
// it does not answer: apid proxies each call to machined (internal/app/apid/service.go:127-145 at
// v1.13.0) in a context that is the caller's own (grpc-proxy v0.5.1 proxy/handler.go:58), so a
// machined that does not answer holds the call open until the caller gives up; unbounded, the first
// such call held the whole command's --timeout, and the node was never asked again.
func answers(ctx context.Context, c *client.Client) error {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	_, err := c.Version(ctx)

	return err
}

// Version is the Talos version tag a node runs.
func Version(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := c.Version(ctx)
	if err != nil {
		return "", err
	}

	if len(resp.GetMessages()) == 0 {
		return "", errors.New("no version in the answer")
	}

	return resp.GetMessages()[0].GetVersion().GetTag(), nil
}

// BootID is how talosctl tells a reboot happened (action.BootIDChangedPostCheckFn).
func BootID(ctx context.Context, c *client.Client) (string, error) {
	body, err := ReadFile(ctx, c, "/proc/sys/kernel/random/boot_id")

	return strings.TrimSpace(body), err
}

// ReadFile is a regular file on the node, as MachineService.Read streams it (internal/app/machined/internal/server/
// v1alpha1/v1alpha1_server.go:1419-1455 at v1.14.0-rc.1: any regular file; NotFound when there is none).
func ReadFile(ctx context.Context, c *client.Client, path string) (string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	r, err := c.Read(ctx, path)
	if err != nil {
		return "", err
	}

	defer r.Close() //nolint:errcheck

	body, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}

	return string(body), nil
}

// BootTime is when the node booted, by its own clock (MachineService/SystemStat's boot_time, /proc/stat's
// btime: internal/app/machined/internal/server/v1alpha1/v1alpha1_monitoring.go:127 at v1.13.0), the
// clock the kubelet stamps a container's start with.
func BootTime(ctx context.Context, c *client.Client) (time.Time, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := c.MachineClient.SystemStat(ctx, &emptypb.Empty{})
	if err != nil {
		return time.Time{}, err
	}

	for _, m := range resp.GetMessages() {
		if m.GetBootTime() > 0 {
			return time.Unix(int64(m.GetBootTime()), 0), nil //nolint:gosec // seconds since 1970 fit
		}
	}

	return time.Time{}, errors.New("SystemStat names no boot time")
}

// Status is a node's MachineStatus: its stage, and whether it is ready (what is unmet when not).
type Status struct {
	Stage string
	Ready bool
	unmet []string
	names []string // the unmet conditions' names (Talos's readiness checks: time, network, services, staticPods, nodeReady)
}

// ReadyButNode: every readiness check passes but nodeReady, the Node's Ready condition
// (internal/app/machined/pkg/controllers/runtime/machine_status.go:354-385 at v1.12.4 and v1.13.0),
// which no Node has before a CNI runs.
func (m Status) ReadyButNode() bool {
	return !m.Ready && len(m.names) > 0 && !slices.ContainsFunc(m.names, func(n string) bool { return n != "nodeReady" })
}

func (m Status) String() string {
	if m.Ready {
		return m.Stage + ", ready"
	}

	if len(m.unmet) == 0 {
		return m.Stage + ", not ready"
	}

	return fmt.Sprintf("%s, not ready: %s", m.Stage, strings.Join(m.unmet, "; "))
}

// MachineStatus is the node's MachineStatus resource.
func MachineStatus(ctx context.Context, c *client.Client) (Status, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	ms, err := safe.StateGet[*runtime.MachineStatus](ctx, c.COSI, runtime.NewMachineStatus().Metadata())
	if err != nil {
		return Status{}, err
	}

	out := Status{Stage: ms.TypedSpec().Stage.String(), Ready: ms.TypedSpec().Status.Ready}
	for _, u := range ms.TypedSpec().Status.UnmetConditions {
		out.unmet = append(out.unmet, fmt.Sprintf("%s: %s", u.Name, u.Reason))
		out.names = append(out.names, u.Name)
	}

	return out, nil
}

// Schematic is the Image Factory schematic a node booted: its "schematic" extension's version
// ("" when the image has none, as a plain siderolabs installer).
func Schematic(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	list, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return "", err
	}

	for ext := range list.All() {
		if ext.TypedSpec().Metadata.Name == "schematic" {
			return ext.TypedSpec().Metadata.Version, nil
		}
	}

	return "", nil
}

// MachineConfigs are the node's active config and the one it saved (ahead of it when staged).
func MachineConfigs(ctx context.Context, c *client.Client) (active, persistent coreconfig.Provider, err error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	get := func(id resource.ID) (coreconfig.Provider, error) {
		mc, err := safe.StateGet[*configres.MachineConfig](ctx, c.COSI, resource.NewMetadata(configres.NamespaceName, configres.MachineConfigType, id, resource.VersionUndefined))
		if state.IsNotFoundError(err) || status.Code(err) == codes.NotFound {
			return nil, nil
		}

		if err != nil {
			return nil, err
		}

		return mc.Provider(), nil
	}

	if active, err = get(configres.ActiveID); err != nil {
		return nil, nil, err
	}

	if persistent, err = get(configres.PersistentID); err != nil {
		return nil, nil, err
	}

	if persistent == nil {
		persistent = active
	}

	return active, persistent, nil
}

// SameConfig: Talos's own config diff finds nothing between them.
func SameConfig(a, b coreconfig.Provider) (bool, error) {
	if a == nil || b == nil {
		return a == nil && b == nil, nil
	}

	diff, err := configdiff.DiffConfigs(a, b)
	if err != nil {
		return false, err
	}

	return diff == "", nil
}

// LoadConfig parses a machine config as Talos does.
func LoadConfig(raw string) (coreconfig.Provider, error) {
	return configloader.NewFromBytes([]byte(raw))
}

var schematicRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseInstaller is what an installer image makes a node run: the tag, and the Image Factory
// Schematic its path names (factory.talos.dev/metal-installer/<schematic>:<version>; "" for a
// plain siderolabs installer).
func ParseInstaller(ref string) (version, schematic string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}

	repo := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, version = ref[:i], ref[i+1:]
	}

	if last := repo[strings.LastIndex(repo, "/")+1:]; schematicRe.MatchString(last) {
		schematic = last
	}

	return version, schematic
}

// EtcdMembers is the cluster's etcd membership, as a control plane sees it.
func EtcdMembers(ctx context.Context, c *client.Client) ([]*machineapi.EtcdMember, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := c.EtcdMemberList(ctx, &machineapi.EtcdMemberListRequest{})
	if err != nil {
		return nil, err
	}

	if len(resp.GetMessages()) == 0 {
		return nil, errors.New("no member list in the answer")
	}

	return resp.GetMessages()[0].GetMembers(), nil
}

// EtcdStatus is a control plane's own etcd member status.
func EtcdStatus(ctx context.Context, c *client.Client) (*machineapi.EtcdMemberStatus, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := c.EtcdStatus(ctx)
	if err != nil {
		return nil, err
	}

	if len(resp.GetMessages()) == 0 {
		return nil, errors.New("no status in the answer")
	}

	return resp.GetMessages()[0].GetMemberStatus(), nil
}

func etcdAlarms(ctx context.Context, c *client.Client) ([]string, error) {
	ctx, cancel := wait.Call(ctx)
	defer cancel()

	resp, err := c.EtcdAlarmList(ctx)
	if err != nil {
		return nil, err
	}

	var alarms []string

	for _, m := range resp.GetMessages() {
		for _, a := range m.GetMemberAlarms() {
			if a.GetAlarm() != machineapi.EtcdMemberAlarm_NONE {
				alarms = append(alarms, fmt.Sprintf("%s on member %016x", a.GetAlarm(), a.GetMemberId()))
			}
		}
	}

	return alarms, nil
}

// memberNode is where a member's Talos API answers: its client URL's host, on the port we use.
func memberNode(m *machineapi.EtcdMember, port string) (input.Node, error) {
	urls := m.GetClientUrls()
	if len(urls) == 0 {
		urls = m.GetPeerUrls()
	}

	if len(urls) == 0 {
		return input.Node{}, fmt.Errorf("etcd member %016x has no URL", m.GetId())
	}

	u, err := url.Parse(urls[0])
	if err != nil {
		return input.Node{}, err
	}

	name := m.GetHostname()
	if name == "" {
		name = fmt.Sprintf("%016x", m.GetId())
	}

	return input.Node{Name: name, IP: u.Hostname(), Addr: net.JoinHostPort(u.Hostname(), port)}, nil
}

// EtcdLook is how a person looks at etcd from a control plane.
func EtcdLook(n input.Node) string {
	return fmt.Sprintf("talosctl -n %s etcd members; talosctl -n %s etcd status; talosctl -n %s etcd alarm list", n.IP, n.IP, n.IP)
}

// EtcdReport checks the cluster's etcd from node's view: every member started, no learner, each
// member's own status without errors, its members' etcd at most one minor apart, no alarms. It returns the members on
// success.
func (t *Talosconfig) EtcdReport(ctx context.Context, n input.Node, c *client.Client) ([]*machineapi.EtcdMember, error) {
	members, _, err := t.EtcdVersions(ctx, n, c)

	return members, err
}

// EtcdVersions is EtcdReport with the etcd each member runs, by hostname: its own status's protocol_version, etcd's
// server version (Talos's EtcdStatus returns etcd's StatusResponse.Version there: internal/app/machined/internal/
// server/v1alpha1/v1alpha1_server.go:2218 at v1.14.0-rc.1). A Talos upgrade moves a control plane's etcd to that
// Talos's default (DefaultEtcdVersion, unless cluster.etcd.image is set), so a roll across Talos 1.13 -> 1.14 runs 3.6
// and 3.7 members side by side, which etcd supports one minor apart, the cluster at the lowest member's minor until
// the last has moved (etcd server/etcdserver/version/monitor.go:55-103 at v3.7.1); members further apart mean a minor
// was skipped, which etcd's upgrade policy does not support.
func (t *Talosconfig) EtcdVersions(ctx context.Context, n input.Node, c *client.Client) ([]*machineapi.EtcdMember, map[string]string, error) {
	versions := map[string]string{}

	members, err := EtcdMembers(ctx, c)
	if err != nil {
		return nil, versions, fmt.Errorf("the member list does not answer: %s", Message(err))
	}

	for _, m := range members {
		if m.GetHostname() == "" {
			return members, versions, fmt.Errorf("member %016x is not started", m.GetId())
		}

		if m.GetIsLearner() {
			return members, versions, fmt.Errorf("member %s is a learner (still joining)", m.GetHostname())
		}

		mn, err := memberNode(m, n.Port())
		if err != nil {
			return members, versions, err
		}

		mc, err := t.Connect(ctx, mn)
		if err != nil {
			return members, versions, err
		}

		st, err := EtcdStatus(ctx, mc)
		mc.Close() //nolint:errcheck

		if err != nil {
			return members, versions, fmt.Errorf("member %s (%s) does not answer its status: %s", m.GetHostname(), mn.IP, Message(err))
		}

		if len(st.GetErrors()) > 0 {
			return members, versions, fmt.Errorf("member %s reports errors: %s", m.GetHostname(), strings.Join(st.GetErrors(), "; "))
		}

		versions[m.GetHostname()] = st.GetProtocolVersion()
	}

	if err := minorsApart(versions); err != nil {
		return members, versions, err
	}

	alarms, err := etcdAlarms(ctx, c)
	if err != nil {
		return members, versions, fmt.Errorf("the alarm list does not answer: %s", Message(err))
	}

	if len(alarms) > 0 {
		return members, versions, fmt.Errorf("alarms raised: %s", strings.Join(alarms, ", "))
	}

	return members, versions, nil
}

// minorsApart refuses members whose etcd is more than one minor apart (an unparsable version is not judged).
func minorsApart(versions map[string]string) error {
	type minor struct{ major, minor int }

	var low, high minor

	lowName, highName := "", ""

	for name, v := range versions {
		var m minor
		if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d", &m.major, &m.minor); err != nil {
			continue
		}

		if lowName == "" || m.major < low.major || (m.major == low.major && m.minor < low.minor) {
			low, lowName = m, name
		}

		if highName == "" || m.major > high.major || (m.major == high.major && m.minor > high.minor) {
			high, highName = m, name
		}
	}

	if lowName != "" && (low.major != high.major || high.minor-low.minor > 1) {
		return fmt.Errorf("members run etcd more than one minor apart (%s %s, %s %s): etcd upgrades one minor at a time", lowName, versions[lowName], highName, versions[highName])
	}

	return nil
}

// MemberVersions are the members' hostnames, each with the etcd it runs ("valinor-1 3.7.1").
func MemberVersions(members []*machineapi.EtcdMember, versions map[string]string) []string {
	var out []string

	for _, m := range members {
		if v := versions[m.GetHostname()]; v != "" {
			out = append(out, m.GetHostname()+" "+v)
		} else {
			out = append(out, m.GetHostname())
		}
	}

	return out
}

// MemberNames are the members' hostnames.
func MemberNames(members []*machineapi.EtcdMember) []string {
	var names []string
	for _, m := range members {
		names = append(names, m.GetHostname())
	}

	return names
}

// PullBound bounds one pull, every try of it: a Kubernetes image or the installer takes 1 to 5 minutes
// on a home connection.
const PullBound = 10 * time.Minute

// PullTries: a pull whose call to the node breaks (Unavailable: the connection dropped, apid
// restarted) is asked again, this many times in all, within PullBound. A registry's own failures
// Talos retries itself, inside one call, until the call's context ends (internal/pkg/containers/image/
// image.go:167-260 at v1.13.0, :112 at v1.12.4: retry.Exponential, 5 s units, up to 20 minutes),
// except an image that is not there (NotFound, WithMaxNotFoundRetries(0)) or one its verification
// refuses (PermissionDenied): those fail at once, and retrying them here would change nothing.
const PullTries = 3

// pullPause is the wait before asking again: the node's API comes back within seconds after apid restarts.
const pullPause = 2 * time.Second

// pullRetrying runs one pull (pullOnce) until it passes, fails for good, PullTries are used, or ctx ends.
func pullRetrying(ctx context.Context, image string, pullOnce func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, PullBound)
	defer cancel()

	var err error

	for try := 1; try <= PullTries; try++ {
		if err = pullOnce(ctx); err == nil || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}

		if try < PullTries {
			report.Progress(image, "the pull's call to the node broke (%s): asking again (%d of %d)", Message(err), try+1, PullTries)

			select {
			case <-ctx.Done():
				return err
			case <-time.After(pullPause):
			}
		}
	}

	return status.Errorf(codes.Unavailable, "%s (asked %d times: the call to the node broke each time)", status.Convert(err).Message(), PullTries)
}

// PullImage pulls an image into the system containerd, where the installer runs from, as
// `talosctl upgrade` does (--namespace system): ImageService on Talos 1.13+, MachineService before.
func PullImage(ctx context.Context, c *client.Client, lifecycle bool, image string) error {
	return pullRetrying(ctx, image, func(ctx context.Context) error {
		if !lifecycle {
			return c.ImagePull(ctx, common.ContainerdNamespace_NS_SYSTEM, image) //nolint:staticcheck // the Talos 1.12 API
		}

		stream, err := c.ImageClient.Pull(ctx, &machineapi.ImageServicePullRequest{Containerd: SystemContainerd(), ImageRef: image})
		if err != nil {
			return err
		}

		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return errors.New("the pull ended without naming the image pulled")
			}

			if err != nil {
				return err
			}

			if msg.GetName() != "" {
				return nil
			}
		}
	})
}

// SystemContainerd is talosctl's "system" namespace: the CRI containerd's system namespace.
func SystemContainerd() *common.ContainerdInstance {
	return &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}
}

// CRIContainerd is where Kubernetes' own images go (static pods).
func CRIContainerd() *common.ContainerdInstance {
	return &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_CRI}
}

// PullTo pulls an image into a given containerd namespace (Kubernetes images before a config change),
// asking again as PullImage does.
func PullTo(ctx context.Context, c *client.Client, lifecycle bool, ci *common.ContainerdInstance, image string) error {
	return pullRetrying(ctx, image, func(ctx context.Context) error {
		if !lifecycle {
			return c.ImagePull(ctx, ci.GetNamespace(), image) //nolint:staticcheck // the Talos 1.12 API
		}

		stream, err := c.ImageClient.Pull(ctx, &machineapi.ImageServicePullRequest{Containerd: ci, ImageRef: image})
		if err != nil {
			return err
		}

		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}

			if err != nil {
				return err
			}

			if msg.GetName() != "" {
				return nil
			}
		}
	})
}
