package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Scenario is what a test scripts: the cluster, its etcd, and every fake node's behaviour.
//
// Durations are milliseconds. Every field but a node's name, address, role and version may be
// left out; the zero value is a healthy node that reboots in no time and comes back as expected.
type Scenario struct {
	Cluster ClusterSpec `json:"cluster"`
	Etcd    EtcdSpec    `json:"etcd"`
	Nodes   []*NodeSpec `json:"nodes"`
	// Factory: Image Factory's schematics by ID, for what an installer carries (cmdline.go); a schematic
	// left out carries nothing a test looks at.
	Factory map[string]SchematicSpec `json:"factory,omitempty"`
}

// ClusterSpec is what the nodes' configs are generated from.
type ClusterSpec struct {
	Name string `json:"name"`
	// Endpoint is the cluster's Kubernetes API (cluster.controlPlane.endpoint): the server of the
	// admin kubeconfig MachineService.Kubeconfig hands out.
	Endpoint          string `json:"endpoint"`
	KubernetesVersion string `json:"kubernetesVersion"`
	// ConfigVersion is the version contract the configs are generated for ("v1.12").
	ConfigVersion string `json:"configVersion"`
	// KubernetesCA is the cluster's Kubernetes CA (PEM), for a bundle made for the scenario: a real
	// API server's (tools/kube_cluster.py), whose client CA it is, so the admin kubeconfig the nodes
	// sign with it signs in there, as a Talos cluster's kube-apiserver trusts its bundle's CA. Empty:
	// the one the bundle makes.
	KubernetesCA *KeyPairSpec `json:"kubernetesCA,omitempty"`
	// Kubelet: every configured node runs a kubelet against the cluster's Kubernetes API (kubelet.go);
	// none when absent.
	Kubelet *KubeletSpec `json:"kubelet,omitempty"`
}

// KeyPairSpec is a PEM certificate and its key.
type KeyPairSpec struct {
	Crt string `json:"crt"`
	Key string `json:"key"`
}

// EtcdSpec is the cluster-wide etcd state.
type EtcdSpec struct {
	// Bootstrapped: every running control plane is a started member with its data directory filled.
	Bootstrapped bool        `json:"bootstrapped"`
	Alarms       []AlarmSpec `json:"alarms,omitempty"`
	// JoinTimeoutMs: how long a control plane's etcd asks to join (or waits for a bootstrap) before it gives
	// up, Failed (etcd.go, waitToJoin): Talos's EtcdJoinTimeout, 30 minutes, when left out; a test scales it down.
	JoinTimeoutMs int `json:"joinTimeoutMs,omitempty"`
	// BootTimeoutMs: how long a control plane's Boot sequence waits for etcd before machined reboots it
	// (etcd.go, bootTimeout): Talos's BootTimeout, 70 minutes, when left out.
	BootTimeoutMs int `json:"bootTimeoutMs,omitempty"`
}

// AlarmSpec is one etcd alarm raised by a member (NOSPACE, CORRUPT).
type AlarmSpec struct {
	Node  string `json:"node"`
	Alarm string `json:"alarm"`
}

// NodeSpec scripts one node.
type NodeSpec struct {
	Name    string `json:"name"`
	Address string `json:"address"` // IP:port, each node on its own loopback address
	Role    string `json:"role"`    // controlplane | worker
	// Version is the Talos version the node runs (v1.12.x: no Lifecycle or Image service).
	Version   string `json:"version"`
	Schematic string `json:"schematic,omitempty"`
	// Maintenance: booted without a config (PXE, or a wiped disk): insecure TLS, reader role only.
	Maintenance bool `json:"maintenance,omitempty"`
	// MAC is the permanent address of the machine's one network link, the one that carries its
	// address (default: a locally administered one derived from the name); "none": the driver
	// reports no permanent address.
	MAC string `json:"mac,omitempty"`
	// UUID is the machine's SMBIOS system UUID (default: one derived from the name); "none": the
	// firmware has no SMBIOS, so Talos publishes no SystemInformation (U-Boot boards).
	UUID string `json:"uuid,omitempty"`
	// Arch is the architecture Version reports (amd64 when left out).
	Arch string `json:"arch,omitempty"`
	// Hardware: what the machine tells anyone in maintenance mode, its disks above all (hardware.go).
	Hardware *HardwareSpec `json:"hardware,omitempty"`
	// BootDelayMs: the API is down this long after the stand-in starts (still booting or installing).
	BootDelayMs int `json:"bootDelayMs,omitempty"`
	// ReadyAfterMs: MachineStatus is running but not ready this long after each boot.
	ReadyAfterMs int `json:"readyAfterMs,omitempty"`
	// BootstrapAllowedAfterMs: Bootstrap answers FailedPrecondition "not available yet" this long after each boot.
	BootstrapAllowedAfterMs int `json:"bootstrapAllowedAfterMs,omitempty"`
	// Etcd is this control plane's own member state.
	Etcd MemberSpec `json:"etcd"`
	// RenderDelayMs: Talos's controllers render the control plane's config resources this long after
	// a config goes active (controlplane.go); 0 at once.
	RenderDelayMs int `json:"renderDelayMs,omitempty"`
	// ApplyNeedsReboot: a config change is one Talos cannot apply immediately (the dry run says REBOOT); Talos 1.12 and
	// 1.13 only: 1.14 applies every change live (node.go, liveConfig).
	ApplyNeedsReboot bool `json:"applyNeedsReboot,omitempty"`
	// RewrittenAfterBoot: files (path: content) a host process or a privileged pod rewrites after each boot's
	// WriteUserFiles, as no Talos code does: what the upgrader's read-back (files.go) must notice.
	RewrittenAfterBoot map[string]string `json:"rewrittenAfterBoot,omitempty"`
	// Reboot, Upgrade, Install, Reset: what each disruptive call does to the node.
	Reboot  Outcome        `json:"reboot"`
	Upgrade UpgradeOutcome `json:"upgrade"`
	Install Outcome        `json:"install"` // after a maintenance-mode ApplyConfiguration
	Reset   Outcome        `json:"reset"`
	// Hang: these methods (as the call log names them) accept the call and never answer it (hang.go).
	Hang []string `json:"hang,omitempty"`
	// CrashLoop: these control plane components (kube-apiserver, ...) crash-loop each time the kubelet
	// starts their container from now on (kubelet.go); the API server then never answers.
	CrashLoop []string `json:"crashLoop,omitempty"`
	// PodStartHeld (a test control, no Talos or kubelet behaviour): while set, the node's kubelet reports none of
	// this boot's containers started, PodStartMs or not; a test clears it (POST /nodes/NAME {"podStartHeld":
	// false}) once it saw what it must see before they start (kubelet.go).
	PodStartHeld bool `json:"podStartHeld,omitempty"`
	// APIServerNotReady: the node's kube-apiserver runs and answers /readyz not ready (apiserver.go).
	APIServerNotReady bool `json:"apiServerNotReady,omitempty"`
	// APIServerServeHeld (a test hook, no Talos behaviour): the first boot's API server starts serving only once
	// the next boot has tried to listen on its port, so a boot that ends at once ends before its serve goroutine
	// ran: the order in which a listener left to that goroutine outlived the boot (apiserver.go, stopAPIServer).
	APIServerServeHeld bool `json:"apiServerServeHeld,omitempty"`
	// PullBreaks: the next this many image pulls on the node break off Unavailable (the connection to
	// the node dropped), as a call does when apid restarts or the network drops (machine.go).
	PullBreaks int `json:"pullBreaks,omitempty"`
}

// MemberSpec is one control plane's etcd member.
type MemberSpec struct {
	Errors     []string `json:"errors,omitempty"` // EtcdStatus errors (an unhealthy member)
	Learner    bool     `json:"learner,omitempty"`
	NotStarted bool     `json:"notStarted,omitempty"` // listed without a name, as etcd lists an unstarted member
	// Stale: the node was reflashed (it is in maintenance mode) and etcd still lists the member it
	// was, down, as etcd lists a member that never left.
	Stale bool `json:"stale,omitempty"`
	// JoinAfterMs: after each boot with an empty data directory, etcd is Preparing this long before
	// it asks to join (pulling its image, which a reflashed node has not got: etcd.go, startEtcd).
	JoinAfterMs int `json:"joinAfterMs,omitempty"`
	// PullHeld (a test control, no Talos behaviour): etcd's image pull after a boot with an empty data directory
	// ends only once the test releases it (POST /nodes/NAME/etcd-pull-release), JoinAfterMs or not, so a test acts
	// while the node is known still to wait rather than within a time it hopes is long enough (etcd.go).
	PullHeld bool `json:"pullHeld,omitempty"`
}

// Outcome is what happens when the node goes down: it comes back after DownMs, and how.
type Outcome struct {
	DownMs int `json:"downMs,omitempty"`
	// Result: "up" (default: the expected result), "never" (stays down), "old-version" (boots the
	// version it ran before), "maintenance" (boots without a config), "not-ready" (MachineStatus
	// never becomes ready).
	Result string `json:"result,omitempty"`
	// ReplyLost (install only): the node takes a maintenance-mode config, and the connection drops before
	// its reply goes out, so the client sees only the connection close (machine.go, ApplyConfiguration).
	// Without it, the call that takes a node down always gets its reply (node.go, stopAfterReplies).
	ReplyLost bool `json:"replyLost,omitempty"`
}

// UpgradeOutcome adds the installer's own answers to an Outcome.
type UpgradeOutcome struct {
	Outcome

	ExitCode  int32  `json:"exitCode,omitempty"`  // the installer's exit code (non-zero: the upgrade failed, nothing staged)
	PullError string `json:"pullError,omitempty"` // pulling the installer image fails with this (NotFound)
	// InstallMs: how long LifecycleService.Upgrade's installer runs (a real one writes the disk and the
	// bootloader: minutes); it runs to its end whatever happens to the stream (lifecycle.go).
	InstallMs int `json:"installMs,omitempty"`
	// Held (a test control, no Talos behaviour): an installer started while it is set runs until the test
	// releases it (POST /nodes/NAME/installer-release), InstallMs or not, so a test acts while the installer is
	// known to run rather than within a time it hopes is long enough (lifecycle.go).
	Held bool `json:"held,omitempty"`
}

var (
	versionRe   = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	schematicRe = regexp.MustCompile(`^[0-9a-f]{64}$`)
	results     = map[string]bool{"": true, "up": true, "never": true, "old-version": true, "maintenance": true, "not-ready": true}
)

func loadScenario(path string) (*Scenario, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}

	var sc Scenario

	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()

	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	return &sc, sc.validate()
}

func (sc *Scenario) validate() error {
	if sc.Cluster.Name == "" || sc.Cluster.Endpoint == "" {
		return fmt.Errorf("cluster: name and endpoint are required")
	}

	if sc.Cluster.KubernetesVersion == "" {
		sc.Cluster.KubernetesVersion = "1.34.1"
	}

	if sc.Cluster.ConfigVersion == "" {
		sc.Cluster.ConfigVersion = "v1.12"
	}

	// Talos's constants.EtcdJoinTimeout and constants.BootTimeout (pkg/machinery/constants/constants.go:964
	// and :956 at v1.12.4, :920 and :909 at v1.13.0).
	if sc.Etcd.JoinTimeoutMs == 0 {
		sc.Etcd.JoinTimeoutMs = int((30 * time.Minute).Milliseconds())
	}

	if sc.Etcd.BootTimeoutMs == 0 {
		sc.Etcd.BootTimeoutMs = int((70 * time.Minute).Milliseconds())
	}

	if sc.Etcd.JoinTimeoutMs < 0 || sc.Etcd.BootTimeoutMs < 0 {
		return fmt.Errorf("etcd: joinTimeoutMs and bootTimeoutMs must not be negative")
	}

	if ca := sc.Cluster.KubernetesCA; ca != nil {
		if _, err := caFrom([]byte(ca.Crt), []byte(ca.Key)); err != nil {
			return fmt.Errorf("cluster: kubernetesCA: %w", err)
		}
	}

	if k := sc.Cluster.Kubelet; k != nil && (sc.Cluster.KubernetesCA == nil || k.HTTPCheckFrequencyMs <= 0) {
		return fmt.Errorf("cluster: kubelet needs kubernetesCA (it signs in to the API server at endpoint) and httpCheckFrequencyMs > 0")
	}

	if len(sc.Nodes) == 0 {
		return fmt.Errorf("no nodes")
	}

	names, addresses := map[string]bool{}, map[string]bool{}

	for _, n := range sc.Nodes {
		if err := n.validate(); err != nil {
			return fmt.Errorf("node %q: %w", n.Name, err)
		}

		if names[n.Name] || addresses[n.Address] {
			return fmt.Errorf("node %q: name or address %s given twice", n.Name, n.Address)
		}

		names[n.Name], addresses[n.Address] = true, true
	}

	for _, a := range sc.Etcd.Alarms {
		if !names[a.Node] {
			return fmt.Errorf("etcd alarm on unknown node %q", a.Node)
		}
	}

	return nil
}

func (n *NodeSpec) validate() error {
	if n.Name == "" {
		return fmt.Errorf("a name is required")
	}

	host, _, err := net.SplitHostPort(n.Address)
	if err != nil || net.ParseIP(host) == nil {
		return fmt.Errorf("address %q is not IP:port", n.Address)
	}

	if n.Role != "controlplane" && n.Role != "worker" {
		return fmt.Errorf("role %q is not controlplane or worker", n.Role)
	}

	if !versionRe.MatchString(n.Version) {
		return fmt.Errorf("version %q is not vX.Y.Z", n.Version)
	}

	if n.Schematic != "" && !schematicRe.MatchString(n.Schematic) {
		return fmt.Errorf("schematic %q is not an Image Factory schematic ID", n.Schematic)
	}

	if n.MAC != "" && n.MAC != "none" {
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return fmt.Errorf("mac %q is not a MAC address", n.MAC)
		}
	}

	if n.UUID != "" && n.UUID != "none" {
		if _, err := uuid.Parse(n.UUID); err != nil {
			return fmt.Errorf("uuid %q is not a UUID", n.UUID)
		}
	}

	if n.Arch != "" && n.Arch != "amd64" && n.Arch != "arm64" {
		return fmt.Errorf("arch %q is not amd64 or arm64", n.Arch)
	}

	if err := n.Hardware.validate(); err != nil {
		return err
	}

	if n.Etcd.JoinAfterMs < 0 {
		return fmt.Errorf("etcd joinAfterMs %d is negative", n.Etcd.JoinAfterMs)
	}

	if n.Etcd.Stale && (n.Role != "controlplane" || !n.Maintenance) {
		return fmt.Errorf("a stale etcd member is what a reflashed control plane leaves: role controlplane and maintenance mode")
	}

	if err := validateHang(n.Hang); err != nil {
		return err
	}

	for _, c := range n.CrashLoop {
		if !slices.Contains(controlPlaneComponents, c) || n.Role != "controlplane" {
			return fmt.Errorf("crashLoop %q is not a control plane component of a control plane", c)
		}
	}

	if n.PullBreaks < 0 {
		return fmt.Errorf("pullBreaks %d is negative", n.PullBreaks)
	}

	for what, r := range map[string]string{"reboot": n.Reboot.Result, "upgrade": n.Upgrade.Result, "install": n.Install.Result, "reset": n.Reset.Result} {
		if !results[r] {
			return fmt.Errorf("%s result %q is not one of up, never, old-version, maintenance, not-ready", what, r)
		}
	}

	return nil
}

// installerImage is the Image Factory installer for a version and schematic, as Iluvatar's configs name it.
func installerImage(schematic, version string) string {
	if schematic == "" {
		return "ghcr.io/siderolabs/installer:" + version
	}

	return fmt.Sprintf("factory.talos.dev/metal-installer/%s:%s", schematic, version)
}

// parseInstaller is what an installer image makes a node run: its tag, and the schematic the
// Image Factory path names ("" for a plain siderolabs installer).
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
