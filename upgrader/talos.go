package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
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
)

// callTimeout bounds one Talos API call: a node that accepts the connection and then hangs must
// not use up a whole command's --timeout in one call.
const callTimeout = 15 * time.Second

// pollEvery is how often a wait asks again.
const pollEvery = 500 * time.Millisecond

// Talos is the talosconfig from stdin: one client per node, dialled at the node's own address.
type Talos struct {
	cfg *clientconfig.Config
}

func newTalos(s *Secrets) (*Talos, error) {
	if err := s.require("talosconfig"); err != nil {
		return nil, err
	}

	cfg, err := clientconfig.FromString(s.Talosconfig)
	if err != nil {
		return nil, usagef("stdin: talosconfig is not a talosconfig: %s", firstLine(err))
	}

	if cfg.Context == "" || cfg.Contexts[cfg.Context] == nil {
		return nil, usagef("stdin: talosconfig has no current context")
	}

	return &Talos{cfg: cfg}, nil
}

// dialOptions make a reconnect to a rebooting node quick: gRPC's default backoff grows to 120 s.
func dialOptions() client.OptionFunc {
	return client.WithGRPCDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	}))
}

// connect is a client for one node, authenticated by the talosconfig's client certificate.
func (t *Talos) connect(ctx context.Context, n Node) (*client.Client, error) {
	return client.New(ctx, client.WithConfig(t.cfg), client.WithEndpoints(n.Addr), dialOptions())
}

// connectEndpoints is a client for the talosconfig's own endpoints (as talosctl without -e).
func (t *Talos) connectEndpoints(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, client.WithConfig(t.cfg), dialOptions())
}

// connectInsecure is what talosctl --insecure does: TLS without verifying, no client certificate
// (a node in maintenance mode serves a certificate of its own making).
func connectInsecure(ctx context.Context, n Node) (*client.Client, error) {
	return client.New(ctx, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(n.Addr), dialOptions()) //nolint:gosec
}

func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// transient: the node is not answering (yet): down, rebooting, installing, or not trusting us yet.
func transient(err error) bool {
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

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}

	return s
}

// grpcMessage is an error as a person reads it: the status message without the "rpc error" noise.
func grpcMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}

	return err.Error()
}

// Node states, as probe prints them.
const (
	stateRunning     = "running"
	stateMaintenance = "maintenance"
	stateUnreachable = "unreachable"
)

// classify asks a node who it is: it answers our client certificate (running, configured for
// this cluster), or only an insecure client (maintenance mode: no config yet), or nothing.
func (t *Talos) classify(ctx context.Context, n Node) (string, error) {
	var (
		wg                     sync.WaitGroup
		secureErr, insecureErr error
	)

	wg.Add(2)

	go func() {
		defer wg.Done()

		c, err := t.connect(ctx, n)
		if err == nil {
			defer c.Close() //nolint:errcheck

			_, err = c.Version(ctx)
		}

		secureErr = err
	}()

	go func() {
		defer wg.Done()

		c, err := connectInsecure(ctx, n)
		if err == nil {
			defer c.Close() //nolint:errcheck

			_, err = c.Version(ctx)
		}

		insecureErr = err
	}()

	wg.Wait()

	// Any answer over mutual TLS (even a refusal by role) is a configured node of this cluster.
	if secureErr == nil || !transient(secureErr) {
		return stateRunning, nil
	}

	// Without a client certificate only maintenance mode answers: Talos 1.13 with a reader's
	// Version, Talos 1.12's maintenance service with "not implemented in maintenance mode".
	if insecureErr == nil || (status.Code(insecureErr) == codes.Unimplemented && strings.Contains(insecureErr.Error(), "maintenance")) {
		return stateMaintenance, nil
	}

	return stateUnreachable, secureErr
}

// version is the Talos version tag a node runs.
func version(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := callCtx(ctx)
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

// bootID is how talosctl tells a reboot happened (action.BootIDChangedPostCheckFn).
func bootID(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()

	r, err := c.Read(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}

	defer r.Close() //nolint:errcheck

	body, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}

	return strings.TrimSpace(string(body)), nil
}

type machineStatus struct {
	stage string
	ready bool
	unmet []string
}

func (m machineStatus) String() string {
	if m.ready {
		return m.stage + ", ready"
	}

	if len(m.unmet) == 0 {
		return m.stage + ", not ready"
	}

	return fmt.Sprintf("%s, not ready: %s", m.stage, strings.Join(m.unmet, "; "))
}

func getMachineStatus(ctx context.Context, c *client.Client) (machineStatus, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()

	ms, err := safe.StateGet[*runtime.MachineStatus](ctx, c.COSI, runtime.NewMachineStatus().Metadata())
	if err != nil {
		return machineStatus{}, err
	}

	out := machineStatus{stage: ms.TypedSpec().Stage.String(), ready: ms.TypedSpec().Status.Ready}
	for _, u := range ms.TypedSpec().Status.UnmetConditions {
		out.unmet = append(out.unmet, fmt.Sprintf("%s: %s", u.Name, u.Reason))
	}

	return out, nil
}

// schematic is the Image Factory schematic a node booted: its "schematic" extension's version
// ("" when the image has none, as a plain siderolabs installer).
func schematic(ctx context.Context, c *client.Client) (string, error) {
	ctx, cancel := callCtx(ctx)
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

// machineConfigs are the node's active config and the one it saved (ahead of it when staged).
func machineConfigs(ctx context.Context, c *client.Client) (active, persistent coreconfig.Provider, err error) {
	ctx, cancel := callCtx(ctx)
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

// sameConfig: Talos's own config diff finds nothing between them.
func sameConfig(a, b coreconfig.Provider) (bool, error) {
	if a == nil || b == nil {
		return a == nil && b == nil, nil
	}

	diff, err := configdiff.DiffConfigs(a, b)
	if err != nil {
		return false, err
	}

	return diff == "", nil
}

func loadConfig(raw string) (coreconfig.Provider, error) {
	return configloader.NewFromBytes([]byte(raw))
}

var schematicRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// parseInstaller is what an installer image makes a node run: the tag, and the Image Factory
// schematic its path names (factory.talos.dev/metal-installer/<schematic>:<version>; "" for a
// plain siderolabs installer).
func parseInstaller(ref string) (version, schematic string) {
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

// etcdMembers is the cluster's etcd membership, as a control plane sees it.
func etcdMembers(ctx context.Context, c *client.Client) ([]*machineapi.EtcdMember, error) {
	ctx, cancel := callCtx(ctx)
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

func etcdStatus(ctx context.Context, c *client.Client) (*machineapi.EtcdMemberStatus, error) {
	ctx, cancel := callCtx(ctx)
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
	ctx, cancel := callCtx(ctx)
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
func memberNode(m *machineapi.EtcdMember, port string) (Node, error) {
	urls := m.GetClientUrls()
	if len(urls) == 0 {
		urls = m.GetPeerUrls()
	}

	if len(urls) == 0 {
		return Node{}, fmt.Errorf("etcd member %016x has no URL", m.GetId())
	}

	u, err := url.Parse(urls[0])
	if err != nil {
		return Node{}, err
	}

	name := m.GetHostname()
	if name == "" {
		name = fmt.Sprintf("%016x", m.GetId())
	}

	return Node{Name: name, IP: u.Hostname(), Addr: net.JoinHostPort(u.Hostname(), port)}, nil
}

// etcdLook is how a person looks at etcd from a control plane.
func etcdLook(n Node) string {
	return fmt.Sprintf("talosctl -n %s etcd members; talosctl -n %s etcd status; talosctl -n %s etcd alarm list", n.IP, n.IP, n.IP)
}

// etcdReport checks the cluster's etcd from node's view: every member started, no learner, each
// member's own status without errors, no alarms. It returns the members on success.
func (t *Talos) etcdReport(ctx context.Context, n Node, c *client.Client) ([]*machineapi.EtcdMember, error) {
	members, err := etcdMembers(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("the member list does not answer: %s", grpcMessage(err))
	}

	for _, m := range members {
		if m.GetHostname() == "" {
			return members, fmt.Errorf("member %016x is not started", m.GetId())
		}

		if m.GetIsLearner() {
			return members, fmt.Errorf("member %s is a learner (still joining)", m.GetHostname())
		}

		mn, err := memberNode(m, n.port())
		if err != nil {
			return members, err
		}

		mc, err := t.connect(ctx, mn)
		if err != nil {
			return members, err
		}

		st, err := etcdStatus(ctx, mc)
		mc.Close() //nolint:errcheck

		if err != nil {
			return members, fmt.Errorf("member %s (%s) does not answer its status: %s", m.GetHostname(), mn.IP, grpcMessage(err))
		}

		if len(st.GetErrors()) > 0 {
			return members, fmt.Errorf("member %s reports errors: %s", m.GetHostname(), strings.Join(st.GetErrors(), "; "))
		}
	}

	alarms, err := etcdAlarms(ctx, c)
	if err != nil {
		return members, fmt.Errorf("the alarm list does not answer: %s", grpcMessage(err))
	}

	if len(alarms) > 0 {
		return members, fmt.Errorf("alarms raised: %s", strings.Join(alarms, ", "))
	}

	return members, nil
}

func memberNames(members []*machineapi.EtcdMember) []string {
	var names []string
	for _, m := range members {
		names = append(names, m.GetHostname())
	}

	return names
}

// pullInstaller pulls an image into the system containerd, where the installer runs from, as
// `talosctl upgrade` does (--namespace system): ImageService on Talos 1.13+, MachineService before.
func pullImage(ctx context.Context, c *client.Client, lifecycle bool, image string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	if !lifecycle {
		return c.ImagePull(ctx, common.ContainerdNamespace_NS_SYSTEM, image) //nolint:staticcheck // the Talos 1.12 API
	}

	stream, err := c.ImageClient.Pull(ctx, &machineapi.ImageServicePullRequest{Containerd: systemContainerd(), ImageRef: image})
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
}

// systemContainerd is talosctl's "system" namespace: the CRI containerd's system namespace.
func systemContainerd() *common.ContainerdInstance {
	return &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}
}

// criContainerd is where Kubernetes' own images go (static pods).
func criContainerd() *common.ContainerdInstance {
	return &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_CRI}
}

// pullTo pulls an image into a given containerd namespace (Kubernetes images before a config change).
func pullTo(ctx context.Context, c *client.Client, lifecycle bool, ci *common.ContainerdInstance, image string) error {
	if !lifecycle {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()

		return c.ImagePull(ctx, ci.GetNamespace(), image) //nolint:staticcheck // the Talos 1.12 API
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

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
}
