package main

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	stdx509 "crypto/x509"
	"encoding/base64"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	configapi "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// metal is Talos's metal runtime mode on an installed machine (what a node validates a config against).
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return false }
func (metal) InContainer() bool     { return false }

// machineService is machine.MachineService with the semantics and status codes of
// internal/app/machined/internal/server/v1alpha1 (a configured node, and Talos 1.13's maintenance
// mode) and internal/app/maintenance (Talos 1.12's maintenance service).
type machineService struct {
	machineapi.UnimplementedMachineServiceServer

	n *Node
}

var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

// legacyMaintenance: Talos 1.12 answers in maintenance mode from a separate, smaller service.
func (s *machineService) legacyMaintenance() bool {
	return s.n.maintenance && !s.n.lifecycleAPI()
}

func (s *machineService) unimplemented(method string) error {
	return status.Errorf(codes.Unimplemented, "method %s not implemented", method)
}

func (s *machineService) Version(ctx context.Context, _ *emptypb.Empty) (*machineapi.VersionResponse, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if s.legacyMaintenance() && !rolesOf(ctx).Includes(role.Admin) {
		return nil, status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
	}

	v := &machineapi.Version{
		Version: &machineapi.VersionInfo{
			Tag:       n.version,
			Sha:       fmt.Sprintf("%x", sha256.Sum256([]byte(n.version)))[:8],
			Built:     "",
			GoVersion: "go1.25",
			Os:        "linux",
			Arch:      cmp.Or(n.spec.Arch, "amd64"),
		},
		Platform: &machineapi.PlatformInfo{Name: "metal", Mode: "metal"},
	}

	if n.active != nil {
		v.Features = &machineapi.FeaturesInfo{Rbac: true}
	}

	return &machineapi.VersionResponse{Messages: []*machineapi.Version{v}}, nil
}

func (s *machineService) ApplyConfiguration(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, error) {
	reply, lost, err := s.applyConfiguration(ctx, in)
	if lost {
		// The node took the config and its connection ended before the reply went out: the call ends
		// when the install takes the node down (Stop cancels the call), and the client sees the
		// connection close.
		return nil, hung(ctx)
	}

	return reply, err
}

func (s *machineService) applyConfiguration(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, bool, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if n.maintenance {
		reply, err := s.applyInMaintenance(ctx, in)

		return reply, err == nil && !in.GetDryRun() && n.spec.Install.ReplyLost, err
	}

	reply, err := s.applyConfigured(ctx, in)

	return reply, false, err
}

//nolint:gocyclo,cyclop
func (s *machineService) applyConfigured(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, error) {
	n := s.n

	if !rolesOf(ctx).Includes(role.Admin) {
		return nil, errNotAuthorized
	}

	cfg, err := configloader.NewFromBytes(in.GetData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	if cfg.RawV1Alpha1() == nil {
		return nil, status.Error(codes.InvalidArgument, "the applied machine configuration doesn't contain v1alpha1 config, did you mean to patch the machine config instead?")
	}

	warnings, err := cfg.Validate(metal{})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	diff, err := configdiff.DiffConfigs(n.active, cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to generate diff: %w", err)
	}

	if n.liveConfig() && in.GetMode() == machineapi.ApplyConfigurationRequest_REBOOT { //nolint:staticcheck // the deprecated mode, refused as 1.14 does
		return nil, status.Error(codes.Unimplemented, "the REBOOT mode is not supported, please use AUTO or NO_REBOOT modes instead")
	}

	// CanApplyImmediate: what the scenario says about this node's changes (Talos 1.12 and 1.13; 1.14 asks it no more).
	var immediateErr error
	if diff != "" && n.spec.ApplyNeedsReboot && !n.liveConfig() {
		immediateErr = fmt.Errorf("this config change can't be applied in immediate mode\ndiff:\n%s", diff)
	}

	mode := in.GetMode()
	modeDetails, modeErr := "Applied configuration with a reboot", ""

	switch mode { //nolint:exhaustive
	case machineapi.ApplyConfigurationRequest_TRY, machineapi.ApplyConfigurationRequest_NO_REBOOT:
		if immediateErr != nil {
			return nil, status.Error(codes.InvalidArgument, immediateErr.Error())
		}

		modeDetails = "Applied configuration without a reboot"
	case machineapi.ApplyConfigurationRequest_STAGED:
		modeDetails = "Staged configuration to be applied after the next reboot"
	case machineapi.ApplyConfigurationRequest_AUTO:
		if immediateErr != nil {
			mode = machineapi.ApplyConfigurationRequest_REBOOT
			modeErr = ": " + immediateErr.Error()
		} else {
			mode = machineapi.ApplyConfigurationRequest_NO_REBOOT
			modeDetails = "Applied configuration without a reboot"
		}
	}

	note(ctx, "resolvedMode", mode.String())

	if in.GetDryRun() {
		if diff == "" {
			diff = "No changes."
		}

		return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
			Mode:        mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\nConfig diff:\n\n%s", modeDetails, diff),
		}}}, nil
	}

	switch mode { //nolint:exhaustive
	case machineapi.ApplyConfigurationRequest_TRY, machineapi.ApplyConfigurationRequest_NO_REBOOT:
		n.persistent, n.active = cfg, cfg

		// A new link address takes effect now: the node answers there, and no longer here.
		if addr := n.configuredAddr(cfg); addr != n.addr {
			note(ctx, "movesTo", addr)
			n.move(addr)
		}
	case machineapi.ApplyConfigurationRequest_STAGED:
		n.persistent = cfg
		n.staged = true
	case machineapi.ApplyConfigurationRequest_REBOOT:
		n.persistent = cfg
		n.disrupt(n.spec.Reboot, nil)
	default:
		return nil, fmt.Errorf("incorrect mode '%s' specified for the apply config call", mode)
	}

	if err := n.writeConfigs(); err != nil {
		return nil, err
	}

	return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
		Mode:        mode,
		Warnings:    warnings,
		ModeDetails: modeDetails + modeErr,
	}}}, nil
}

// applyInMaintenance takes a node's first config: it validates it, then installs and boots it.
// Whatever machine the config is for: Talos checks no selector of it (a LinkAliasConfig's
// mac(link.permanent_addr)) against the machine's links before taking it, from any client
// (internal/app/maintenance/server.go:85-135 at v1.12.4; internal/app/machined/internal/server/
// v1alpha1/v1alpha1_server.go:173-224 at v1.13.0, a reader allowed while the machine has no config
// at 178-183; RuntimeValidate checks the v1alpha1 document and PCI driver rebinds only).
func (s *machineService) applyInMaintenance(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, error) {
	n := s.n

	if s.legacyMaintenance() {
		switch in.GetMode() { //nolint:exhaustive
		case machineapi.ApplyConfigurationRequest_TRY, machineapi.ApplyConfigurationRequest_REBOOT, machineapi.ApplyConfigurationRequest_AUTO:
		default:
			return nil, status.Errorf(codes.Unimplemented, "apply configuration --mode='%s' is not supported in maintenance mode",
				strings.ReplaceAll(strings.ToLower(in.GetMode().String()), "_", "-"))
		}
	}

	cfg, err := configloader.NewFromBytes(in.GetData())
	if err != nil {
		if s.legacyMaintenance() {
			return nil, fmt.Errorf("failed to parse config: %w", err)
		}

		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	warnings, err := cfg.Validate(metal{})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configuration validation failed: %s", err)
	}

	reply := &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{Warnings: warnings}}}

	if in.GetDryRun() {
		reply.Messages[0].ModeDetails = "Dry run summary:\nNode is running in maintenance mode and does not have a config yet."

		return reply, nil
	}

	if !s.legacyMaintenance() {
		reply.Messages[0].Mode = machineapi.ApplyConfigurationRequest_NO_REBOOT
		reply.Messages[0].ModeDetails = "Applied configuration without a reboot"
	}

	version, schematic := parseInstaller(cfg.Machine().Install().Image())
	note(ctx, "installs", version)

	n.persistent = cfg
	n.disrupt(n.spec.Install, func() {
		n.maintenance = false
		n.pendingVer, n.pendingSch = version, schematic
	})

	return reply, nil
}

// Bootstrap is Talos's (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:417-450 at
// v1.12.4, :423-456 at v1.13.0): the CRI up (IsBootstrapAllowed; bootstrapAllowedAfterMs here), a control
// plane, time in sync (not modelled), this node's own data directory empty; then BootstrapEtcd (etcd.go).
// Nothing asks whether another control plane runs etcd.
func (s *machineService) Bootstrap(ctx context.Context, in *machineapi.BootstrapRequest) (*machineapi.BootstrapResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if s.legacyMaintenance() {
		return nil, s.unimplemented("Bootstrap")
	}

	if time.Since(n.bootedAt) < time.Duration(n.spec.BootstrapAllowedAfterMs)*time.Millisecond {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	}

	if !n.controlPlane() {
		if n.lifecycleAPI() {
			return nil, status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes")
		}

		return nil, status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node")
	}

	if n.etcdData {
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	log.Printf("%s: bootstrap", n.name)

	// BootstrapEtcd (etcd.go): its etcd, joining or not, stopped, and a new cluster started.
	c.bootstrapEtcd(n)

	return &machineapi.BootstrapResponse{Messages: []*machineapi.Bootstrap{{}}}, nil
}

func (s *machineService) Reboot(ctx context.Context, in *machineapi.RebootRequest) (*machineapi.RebootResponse, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if s.legacyMaintenance() {
		return nil, s.unimplemented("Reboot")
	}

	// The reboot that boots a staged upgrade is the upgrade's own: the scenario's upgrade outcome.
	outcome := n.spec.Reboot
	if n.pendingVer != "" {
		outcome = n.spec.Upgrade.Outcome
		note(ctx, "boots", n.pendingVer)
	}

	n.disrupt(outcome, nil)

	return &machineapi.RebootResponse{Messages: []*machineapi.Reboot{{ActorId: uuid.NewString()}}}, nil
}

func (s *machineService) Reset(ctx context.Context, in *machineapi.ResetRequest) (*machineapi.ResetResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if s.legacyMaintenance() && !rolesOf(ctx).Includes(role.Admin) {
		return nil, status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
	}

	if len(in.GetSystemPartitionsToWipe()) > 0 && in.GetMode() == machineapi.ResetRequest_USER_DISKS {
		return nil, fmt.Errorf("reset failed: invalid input, wipe mode USER_DISKS doesn't support SystemPartitionsToWipe parameter")
	}

	wipesState := len(in.GetSystemPartitionsToWipe()) == 0
	for _, p := range in.GetSystemPartitionsToWipe() {
		if p.GetLabel() == "STATE" && p.GetWipe() {
			wipesState = true
		}
	}

	// The reset sequence runs after the reply; a graceful one on a control plane leaves etcd first,
	// which etcd refuses for its last member (and then the sequence stops there).
	if in.GetGraceful() && n.controlPlane() && c.member(n.name) != nil {
		if len(c.members) <= 1 {
			log.Printf("%s: reset failed: etcdserver: re-configuration failed due to not enough started members", n.name)

			return &machineapi.ResetResponse{Messages: []*machineapi.Reset{{ActorId: uuid.NewString()}}}, nil
		}

		c.members = slices.DeleteFunc(c.members, func(m *member) bool { return m.name == n.name })
	}

	outcome := n.spec.Reset
	if outcome.Result == "" && wipesState {
		outcome.Result = "maintenance"
	}

	if !in.GetReboot() {
		outcome.Result = "never" // a reset without reboot shuts the machine down
	}

	n.disrupt(outcome, func() { n.etcdData = false })

	return &machineapi.ResetResponse{Messages: []*machineapi.Reset{{ActorId: uuid.NewString()}}}, nil
}

// Upgrade is the legacy upgrade (Talos 1.12, deprecated in 1.13): it pulls and validates the
// installer, checks etcd on a control plane, answers, then upgrades and reboots on its own.
func (s *machineService) Upgrade(ctx context.Context, in *machineapi.UpgradeRequest) (*machineapi.UpgradeResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if s.legacyMaintenance() {
		if !rolesOf(ctx).Includes(role.Admin) {
			return nil, status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
		}
	}

	if n.spec.Upgrade.PullError != "" {
		return nil, fmt.Errorf("error validating installer image %q: %s", in.GetImage(), n.spec.Upgrade.PullError)
	}

	if n.controlPlane() && !n.maintenance && !in.GetForce() {
		if err := c.validateForUpgrade(); err != nil {
			return nil, fmt.Errorf("error validating etcd for upgrade: %w", err)
		}
	}

	version, schematic := parseInstaller(in.GetImage())
	exitCode := n.spec.Upgrade.ExitCode

	if exitCode != 0 {
		// The upgrade sequence fails after the reply: the node stays up on what it ran.
		log.Printf("%s: upgrade failed: installer exited with %d", n.name, exitCode)
	} else {
		n.disrupt(n.spec.Upgrade.Outcome, func() { n.pendingVer, n.pendingSch = version, schematic })
	}

	return &machineapi.UpgradeResponse{Messages: []*machineapi.Upgrade{{Ack: "Upgrade request received", ActorId: uuid.NewString()}}}, nil
}

// validateForUpgrade is internal/pkg/etcd's ValidateForUpgrade on the cluster's members.
func (c *Cluster) validateForUpgrade() error {
	if len(c.members) == 2 {
		return fmt.Errorf("etcd member count(%d) is insufficient to maintain quorum if upgrade commences", len(c.members))
	}

	for _, m := range c.members {
		mn := c.byName[m.name]

		if mn.spec.Etcd.NotStarted {
			return fmt.Errorf("etcd member %016x is not started, all members must be running to perform an upgrade", m.id)
		}

		if !mn.etcdRunning() || len(mn.spec.Etcd.Errors) > 0 {
			return fmt.Errorf("etcd member %016x is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded", m.id)
		}
	}

	return nil
}

// etcdRunning: the node's etcd runs as its member of the cluster (not one of its own: etcd.go).
func (n *Node) etcdRunning() bool { return n.up && !n.maintenance && n.etcdData && n.etcdOwn == nil }

// quorum: enough members whose etcd runs, healthy and started, to elect a leader.
func (c *Cluster) quorum() bool {
	healthy := 0

	for _, m := range c.members {
		mn := c.byName[m.name]
		if mn.etcdRunning() && !mn.spec.Etcd.NotStarted && len(mn.spec.Etcd.Errors) == 0 {
			healthy++
		}
	}

	return healthy >= len(c.members)/2+1
}

func (s *machineService) controlPlaneOnly(api string) error {
	if s.legacyMaintenance() {
		return status.Errorf(codes.Unimplemented, "method %s not implemented", api)
	}

	if !s.n.controlPlane() {
		return status.Errorf(codes.Unimplemented, "%s is only available on control plane nodes", api)
	}

	return nil
}

func (s *machineService) EtcdMemberList(ctx context.Context, in *machineapi.EtcdMemberListRequest) (*machineapi.EtcdMemberListResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := s.controlPlaneOnly("member list"); err != nil {
		return nil, err
	}

	if own := n.ownEtcd(); own != nil {
		return ownMemberList(own), nil
	}

	if !c.bootstrapped || (in.GetQueryLocal() && !n.etcdRunning()) {
		return nil, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	}

	if !c.quorum() {
		return nil, status.Error(codes.Unavailable, "etcdserver: no leader")
	}

	resp := &machineapi.EtcdMembers{}

	for _, m := range c.members {
		mn := c.byName[m.name]
		hostname := m.name

		if mn.spec.Etcd.NotStarted {
			hostname = "" // etcd lists a member that never started without a name
		}

		resp.LegacyMembers = append(resp.LegacyMembers, hostname)
		resp.Members = append(resp.Members, &machineapi.EtcdMember{
			Id:         m.id,
			Hostname:   hostname,
			PeerUrls:   []string{fmt.Sprintf("https://%s:2380", m.ip)},
			ClientUrls: []string{fmt.Sprintf("https://%s:2379", m.ip)},
			IsLearner:  mn.spec.Etcd.Learner,
		})
	}

	return &machineapi.EtcdMemberListResponse{Messages: []*machineapi.EtcdMembers{resp}}, nil
}

func (s *machineService) EtcdStatus(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdStatusResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := s.controlPlaneOnly("etcd status"); err != nil {
		return nil, err
	}

	m, running := c.member(n.name), n.etcdRunning()

	var leader uint64
	if len(c.members) > 0 && c.quorum() {
		leader = c.members[0].id
	}

	if own := n.ownEtcd(); own != nil { // the only member, and so the leader, of its own cluster
		m, running, leader = own, true, own.id
	}

	if !running || m == nil {
		return nil, fmt.Errorf("failed to query etcd status: context deadline exceeded")
	}

	return &machineapi.EtcdStatusResponse{Messages: []*machineapi.EtcdStatus{{MemberStatus: &machineapi.EtcdMemberStatus{
		MemberId:         m.id,
		ProtocolVersion:  n.etcdVersion(),
		StorageVersion:   c.etcdStorageVersion(),
		DbSize:           20 << 20,
		DbSizeInUse:      12 << 20,
		Leader:           leader,
		RaftIndex:        1000,
		RaftTerm:         3,
		RaftAppliedIndex: 1000,
		Errors:           n.spec.Etcd.Errors,
		IsLearner:        n.spec.Etcd.Learner,
	}}}}, nil
}

func (s *machineService) EtcdAlarmList(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdAlarmListResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := s.controlPlaneOnly("etcd alarm list"); err != nil {
		return nil, err
	}

	if !n.etcdRunning() {
		return nil, fmt.Errorf("failed to list etcd alarms: context deadline exceeded")
	}

	var alarms []*machineapi.EtcdMemberAlarm

	for _, a := range c.sc.Etcd.Alarms {
		kind, ok := machineapi.EtcdMemberAlarm_AlarmType_value[a.Alarm]
		if !ok {
			kind = int32(machineapi.EtcdMemberAlarm_NONE)
		}

		alarms = append(alarms, &machineapi.EtcdMemberAlarm{MemberId: memberID(a.Node), Alarm: machineapi.EtcdMemberAlarm_AlarmType(kind)})
	}

	return &machineapi.EtcdAlarmListResponse{Messages: []*machineapi.EtcdAlarm{{MemberAlarms: alarms}}}, nil
}

func (s *machineService) EtcdSnapshot(in *machineapi.EtcdSnapshotRequest, srv machineapi.MachineService_EtcdSnapshotServer) error {
	n := s.n
	c := n.c
	c.mu.Lock()

	if err := s.controlPlaneOnly("etcd snapshot"); err != nil {
		c.mu.Unlock()

		return err
	}

	running := n.etcdRunning()
	c.mu.Unlock()

	if !running {
		return fmt.Errorf("failed reading etcd snapshot: context deadline exceeded")
	}

	// Not a bbolt file: a recognisable body, in several chunks as Talos streams it.
	body := []byte(fmt.Sprintf("talos-api etcd snapshot of %s from %s\n", c.sc.Cluster.Name, n.name))
	for i := 0; i < 3; i++ {
		if err := srv.Send(&common.Data{Bytes: body}); err != nil {
			return err
		}
	}

	return nil
}

func (s *machineService) EtcdRemoveMemberByID(ctx context.Context, in *machineapi.EtcdRemoveMemberByIDRequest) (*machineapi.EtcdRemoveMemberByIDResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := s.controlPlaneOnly("etcd remove member"); err != nil {
		return nil, err
	}

	if !c.quorum() {
		return nil, fmt.Errorf("failed to remove member: etcdserver: no leader")
	}

	i := slices.IndexFunc(c.members, func(m *member) bool { return m.id == in.GetMemberId() })
	if i < 0 {
		return nil, status.Error(codes.NotFound, "etcdserver: member not found")
	}

	c.members = slices.Delete(c.members, i, i+1)
	c.retryJoins()

	return &machineapi.EtcdRemoveMemberByIDResponse{Messages: []*machineapi.EtcdRemoveMemberByID{{}}}, nil
}

func (s *machineService) EtcdLeaveCluster(ctx context.Context, in *machineapi.EtcdLeaveClusterRequest) (*machineapi.EtcdLeaveClusterResponse, error) {
	n := s.n
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()

	if err := s.controlPlaneOnly("etcd leave"); err != nil {
		return nil, err
	}

	if c.member(n.name) != nil {
		if len(c.members) <= 1 {
			return nil, fmt.Errorf("failed to leave cluster: etcdserver: re-configuration failed due to not enough started members")
		}

		c.members = slices.DeleteFunc(c.members, func(m *member) bool { return m.name == n.name })
	}

	n.etcdData = false

	return &machineapi.EtcdLeaveClusterResponse{Messages: []*machineapi.EtcdLeaveCluster{{}}}, nil
}

// Kubeconfig is Talos's (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go, Kubeconfig:
// v1.12.4 lines 1208-1250, v1.13.0 lines 1241-1283): the admin kubeconfig generated afresh from the
// node's running config (adminKubeconfig), in a .tar.gz holding one file, as the Copy protocol wraps it.
func (s *machineService) Kubeconfig(_ *emptypb.Empty, srv machineapi.MachineService_KubeconfigServer) error {
	n := s.n
	c := n.c
	c.mu.Lock()
	err := s.controlPlaneOnly("kubeconfig")
	cfg := n.active
	c.mu.Unlock()

	if err != nil {
		return err
	}

	if cfg == nil {
		// Reset into maintenance mode since the call was let in (authorize turns away a maintenance
		// node's clients before that): without a config a Talos 1.13 node has no machine type
		// (internal/app/internal/machinehelper/machinehelper.go:23-28 at v1.13.0, CheckControlplane).
		return status.Errorf(codes.Unimplemented, "machine type is not set, cannot use kubeconfig API")
	}

	text, err := adminKubeconfig(cfg.Cluster(), time.Now())
	if err != nil {
		return err
	}

	var buf bytes.Buffer

	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)

	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "kubeconfig", Size: int64(len(text)), ModTime: time.Now(), Mode: 0o600}); err != nil {
		return err
	}

	if _, err := tw.Write(text); err != nil {
		return err
	}

	// Talos closes the gzip stream and not the tar writer: no end-of-archive blocks, which
	// machinery's client (client.go, extractKubeconfig) reads as the end of the archive all the same.
	if err := zw.Close(); err != nil {
		return err
	}

	return srv.Send(&common.Data{Bytes: buf.Bytes()})
}

func (s *machineService) Read(in *machineapi.ReadRequest, srv machineapi.MachineService_ReadServer) error {
	n := s.n
	n.c.mu.Lock()
	bootID := n.bootID
	legacy := s.legacyMaintenance()
	file, written := n.files[in.GetPath()]
	n.c.mu.Unlock()

	if legacy {
		return s.unimplemented("Read")
	}

	// The boot ID, and the machine files the boots wrote (files.go): the only files the stand-in has. Talos reads any
	// regular file, NotFound when there is none (v1alpha1_server.go:1419-1455 at v1.14.0-rc.1).
	if written {
		return srv.Send(&common.Data{Bytes: []byte(file)})
	}

	if in.GetPath() != "/proc/sys/kernel/random/boot_id" {
		return status.Errorf(codes.NotFound, "stat %s: no such file or directory", in.GetPath())
	}

	return srv.Send(&common.Data{Bytes: []byte(bootID + "\n")})
}

// SystemStat answers the boot time, /proc/stat's btime in whole seconds (internal/app/machined/internal/
// server/v1alpha1/v1alpha1_monitoring.go:127 at v1.13.0); the CPU counters nothing reads are left out.
func (s *machineService) SystemStat(ctx context.Context, _ *emptypb.Empty) (*machineapi.SystemStatResponse, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if s.legacyMaintenance() {
		return nil, s.unimplemented("SystemStat")
	}

	return &machineapi.SystemStatResponse{Messages: []*machineapi.SystemStat{{BootTime: uint64(n.bootedAt.Unix())}}}, nil //nolint:gosec
}

// pullBroken: the node's script breaks this pull off (called with the cluster's lock held).
func (n *Node) pullBroken() bool {
	if n.spec.PullBreaks > 0 {
		n.spec.PullBreaks--

		return true
	}

	return false
}

// errPullBroken is a pull whose call broke off: what the client sees when apid restarts or the
// connection drops (grpc-go: codes.Unavailable, "transport is closing").
var errPullBroken = status.Error(codes.Unavailable, "connection error: desc = \"transport is closing\"")

func (s *machineService) ServiceList(ctx context.Context, _ *emptypb.Empty) (*machineapi.ServiceListResponse, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if s.legacyMaintenance() {
		return nil, s.unimplemented("ServiceList")
	}

	running := func(id string) *machineapi.ServiceInfo {
		return &machineapi.ServiceInfo{Id: id, State: "Running", Health: &machineapi.ServiceHealth{Healthy: true}}
	}

	services := []*machineapi.ServiceInfo{running("apid"), running("machined")}

	if !n.maintenance {
		services = append(services, running("kubelet"))

		if n.controlPlane() {
			etcd := running("etcd")

			// Preparing while PreFunc pulls the image and asks to join (or waits for a bootstrap), retrying a
			// refused join; Failed once it gave up, EtcdJoinTimeout later (etcd.go, waitToJoin).
			switch state := n.etcdServiceState(); state {
			case "Failed":
				etcd = &machineapi.ServiceInfo{Id: "etcd", State: state, Health: &machineapi.ServiceHealth{Unknown: true, LastMessage: n.etcdFailed}}
			case "Preparing":
				etcd = &machineapi.ServiceInfo{Id: "etcd", State: state, Health: &machineapi.ServiceHealth{Unknown: true, LastMessage: n.etcdJoinErr}}
			}

			services = append(services, etcd, running("trustd"))
		}
	}

	return &machineapi.ServiceListResponse{Messages: []*machineapi.ServiceList{{Services: services}}}, nil
}

// ImagePull is the legacy CRI pull (Talos 1.12; deprecated in 1.13).
func (s *machineService) ImagePull(ctx context.Context, in *machineapi.ImagePullRequest) (*machineapi.ImagePullResponse, error) {
	n := s.n
	n.c.mu.Lock()
	defer n.c.mu.Unlock()

	if s.legacyMaintenance() {
		return nil, s.unimplemented("ImagePull")
	}

	if n.spec.Upgrade.PullError != "" && isInstaller(in.GetReference()) {
		return nil, status.Errorf(codes.NotFound, "error pulling image: %s", n.spec.Upgrade.PullError)
	}

	if n.pullBroken() {
		return nil, errPullBroken
	}

	n.pulled["CRI/"+in.GetNamespace().String()+"/"+in.GetReference()] = true

	return &machineapi.ImagePullResponse{Messages: []*machineapi.ImagePull{{}}}, nil
}

func isInstaller(ref string) bool { return strings.Contains(ref, "installer") }

// The admin kubeconfig's client certificate may start this much before now (Talos v1.12.4 and
// v1.13.0 pkg/kubeconfig/generate.go:76, allowedTimeSkew).
const allowedTimeSkew = 10 * time.Second

// adminKubeconfig is Talos's kubeconfig.GenerateAdmin (pkg/kubeconfig/generate.go:34-58 at v1.12.4 and
// v1.13.0, the same file) and Generate (lines 78-136): a new client certificate from the cluster's issuing CA (its
// Kubernetes CA) with the admin kubeconfig's name, organization and lifetime (the config's
// adminKubeconfig; by default CN admin, O system:masters, 365 days: machinery v1.13.0 constants.go:254,
// 260 and 272, KubernetesAdminCertCommonName, KubernetesAdminCertOrganization, KubernetesAdminCertDefaultLifetime),
// everything embedded: the accepted CAs then the issuing CA as certificate-authority-data, the
// certificate and key as client-certificate-data and client-key-data. Cluster `<name>`, user and
// context `admin@<name>`, namespace default; laid out as clientcmd.Write lays it out (keys sorted,
// no empty preferences: client-go v0.34 and later, preferences,omitzero).
func adminKubeconfig(cluster configapi.ClusterConfig, now time.Time) ([]byte, error) {
	acceptedCAs := cluster.AcceptedCAs()
	if cluster.IssuingCA() != nil {
		acceptedCAs = append(acceptedCAs, &x509.PEMEncodedCertificate{Crt: cluster.IssuingCA().Crt})
	}

	k8sCA, err := x509.NewCertificateAuthorityFromCertificateAndKey(cluster.IssuingCA())
	if err != nil {
		return nil, fmt.Errorf("error getting Kubernetes CA: %w", err)
	}

	admin := cluster.AdminKubeconfig()

	clientCert, err := x509.NewKeyPair(k8sCA,
		x509.CommonName(admin.CommonName()),
		x509.Organization(admin.CertOrganization()),
		x509.NotBefore(now.Add(-allowedTimeSkew)),
		x509.NotAfter(now.Add(admin.CertLifetime())),
		x509.KeyUsage(stdx509.KeyUsageDigitalSignature|stdx509.KeyUsageKeyEncipherment),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}),
	)
	if err != nil {
		return nil, fmt.Errorf("error generating Kubernetes client certificate: %w", err)
	}

	pair := x509.NewCertificateAndKeyFromKeyPair(clientCert)

	var serverCAs []byte
	for _, ca := range acceptedCAs {
		serverCAs = append(serverCAs, ca.Crt...)
	}

	enc := base64.StdEncoding.EncodeToString
	name := cluster.Name()
	user := "admin@" + name

	return fmt.Appendf(nil, `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: %[3]s
    server: %[2]s
  name: %[1]s
contexts:
- context:
    cluster: %[1]s
    namespace: default
    user: %[6]s
  name: %[6]s
current-context: %[6]s
kind: Config
users:
- name: %[6]s
  user:
    client-certificate-data: %[4]s
    client-key-data: %[5]s
`, name, cluster.Endpoint().String(), enc(serverCAs), enc(pair.Crt), enc(pair.Key), user), nil
}
