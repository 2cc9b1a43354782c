package main

import (
	"context"
	"crypto/sha256"
	stdtls "crypto/tls"
	stdx509 "crypto/x509"
	"encoding/binary"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"github.com/google/uuid"
	"github.com/siderolabs/crypto/x509"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	storageapi "github.com/siderolabs/talos/pkg/machinery/api/storage"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	cfgiface "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Cluster holds every fake node and the state they share (etcd), behind one lock.
type Cluster struct {
	mu sync.Mutex

	sc     *Scenario
	bundle *secrets.Bundle
	osCA   *x509.CertificateAuthority
	// maintenanceCA signs what a node in maintenance mode serves: a certificate no talosconfig trusts.
	maintenanceCA *x509.CertificateAuthority
	nodes         []*Node
	byName        map[string]*Node

	bootstrapped bool
	members      []*member      // etcd members, in join order
	joins        map[string]int // how many times each node joined etcd (each join is a new member ID)

	calls *callLog
}

type member struct {
	name string
	id   uint64
	ip   string
}

// Node is one fake Talos node. Every field below the spec is guarded by Cluster.mu.
type Node struct {
	c    *Cluster
	spec *NodeSpec
	name string
	addr string // where it answers now: its config's link address, else the scenario's
	ip   string
	mac  net.HardwareAddr // the link's permanent address (nil: none reported)
	uuid string           // the SMBIOS system UUID ("": no SMBIOS)

	serving    stdtls.Certificate // signed by the OS CA for this node's IP
	maintCert  stdtls.Certificate // self-signed chain, as Talos's maintenance service serves
	version    string
	schematic  string
	pendingVer string // staged by LifecycleService.Upgrade, booted on the next reboot
	pendingSch string
	staged     bool

	maintenance bool
	up          bool
	gen         int // boot generation: a timer from an older boot does nothing
	bootID      string
	bootedAt    time.Time
	neverReady  bool
	ready       bool
	upgrading   bool
	// installRelease: closed by the test to end an installer its script holds (UpgradeOutcome.Held); nil
	// while none is held.
	installRelease chan struct{}

	active     coreconfig.Provider
	persistent coreconfig.Provider
	pulled     map[string]bool
	// files: what the boots wrote of .machine.files, by path (files.go): /var, kept across reboots.
	files    map[string]string
	etcdData bool
	// etcdJoinErr: why etcd refused this control plane's join (it retries on each membership change).
	etcdJoinErr string
	// etcdFailed: etcd gave up joining (EtcdJoinTimeout) and is Failed, with no restart until the next boot
	// (etcd.go, waitToJoin); its message.
	etcdFailed string
	// booted: this boot's Boot sequence ended (a control plane's only once etcd runs: etcd.go, bootDone);
	// MachineStatus is "booting" until then.
	booted bool
	// nodeWatched: Talos's NodeStatusController reads this node's Node from the scenario's Kubernetes API
	// (nodestatus.go); nodeReady and nodeReason are what it last read.
	nodeWatched bool
	nodeReady   bool
	nodeReason  string
	// etcdPulling: etcd is Preparing, pulling its image, before it asks to join (etcd.go).
	etcdPulling bool
	// etcdPullRelease: ends this boot's held etcd image pull (MemberSpec.PullHeld), called by the test with
	// the cluster's lock free; nil while none is held.
	etcdPullRelease func()
	// etcdOwn: its data directory holds a cluster of its own, not the one the others are members of:
	// the member it is there (a Bootstrap while another cluster existed; etcd.go). Only with etcdData.
	etcdOwn *member
	// kubeletRestarts counts the control API's kubelet restarts (kubelet.go).
	kubeletRestarts int
	// kubeletRuns: the control plane containers the kubelet runs now, out of a crash loop's back-off
	// (kubelet.go), by component: the node's API server answers only while it runs (apiserver.go).
	kubeletRuns map[string]bool

	st  state.State
	srv *grpc.Server
	// apiSrv: this boot's kube-apiserver (apiserver.go), closed when the boot ends (goDown), so that no
	// listener of a boot outlives it and the next boot binds its port.
	apiSrv *http.Server
	// apiLis: its listener, closed by stopAPIServer itself (apiserver.go).
	apiLis net.Listener
	// serveHeld: the test hook's held serve goroutine of the boot before (NodeSpec.APIServerServeHeld), released
	// by the next boot's startAPIServer once it has tried to listen; serveHeldUsed: the hook held one already.
	serveHeld     chan struct{}
	serveHeldUsed bool
}

func (n *Node) controlPlane() bool { return n.spec.Role == "controlplane" }

// lifecycleAPI: Talos 1.13 added the Lifecycle and Image services (talosctl's range is >1.13.0-alpha.2).
func (n *Node) lifecycleAPI() bool {
	return !strings.HasPrefix(n.version, "v1.12.") && !strings.HasPrefix(n.version, "v1.11.")
}

// liveConfig: Talos 1.14 applies every config change without a reboot. Its ApplyConfiguration no longer asks
// CanApplyImmediate: AUTO is NO_REBOOT, NO_REBOOT and TRY are never refused for a change, and REBOOT is refused on a
// configured machine (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:217-255 at v1.14.0-rc.1,
// against :202-252 at v1.13.0, which decided AUTO with CanApplyImmediate). The wire API is the same
// (api/machine/machine.proto: REBOOT only marked deprecated).
func (n *Node) liveConfig() bool {
	var major, minor int

	if _, err := fmt.Sscanf(n.version, "v%d.%d.", &major, &minor); err != nil {
		return false
	}

	return major > 1 || (major == 1 && minor >= 14)
}

func memberID(name string) uint64 {
	sum := sha256.Sum256([]byte("etcd member " + name))

	return binary.BigEndian.Uint64(sum[:8])
}

// join adds a node as a new member: etcd gives every join a new ID (the first is memberID(name)).
func (c *Cluster) join(n *Node) {
	c.members = append(c.members, &member{name: n.name, id: c.nextMemberID(n.name), ip: n.ip})
}

// nextMemberID is the ID etcd gives the node's next member (a join, or a new cluster it starts).
func (c *Cluster) nextMemberID(name string) uint64 {
	c.joins[name]++

	if k := c.joins[name]; k > 1 {
		return memberID(fmt.Sprintf("%s#%d", name, k))
	}

	return memberID(name)
}

// joinEtcd is Talos's addMember for a control plane whose etcd data directory is empty: it
// removes a member of its own name first (a reflashed node's old one), then joins; etcd refuses
// while it has no leader, or while another member holds this node's peer URL. A refused join keeps
// etcd Preparing: Talos's PreFunc asks again every 3 s (buildInitialCluster, etcd.go), which the
// stand-in does when the membership changes or a node boots, until EtcdJoinTimeout (waitToJoin).
func (c *Cluster) joinEtcd(n *Node) {
	if !c.quorum() {
		n.etcdJoinErr = "error getting etcd member list: etcdserver: no leader"

		return
	}

	if old := c.member(n.name); old != nil {
		log.Printf("%s: etcd: removing the member of its own name (%016x) before joining", n.name, old.id)
		c.members = slices.DeleteFunc(c.members, func(m *member) bool { return m == old })
	}

	for _, m := range c.members {
		if m.ip == n.ip {
			n.etcdJoinErr = fmt.Sprintf("member already exists with the same peer URLs [https://%s:2380], but is not a learner: etcdserver: Peer URLs already exists", n.ip)

			return
		}
	}

	c.join(n)
	n.etcdData, n.etcdOwn = true, nil
	n.etcdJoinErr = ""

	log.Printf("%s: joined etcd as member %016x", n.name, c.member(n.name).id)
}

// retryJoins lets every control plane whose join was refused try again (after a membership change).
func (c *Cluster) retryJoins() {
	for _, n := range c.nodes {
		if n.up && n.etcdJoinErr != "" && n.etcdFailed == "" {
			c.joinEtcd(n)
			n.writeMachineStatus() //nolint:errcheck
		}
	}
}

func newCluster(sc *Scenario, bundle *secrets.Bundle) (*Cluster, error) {
	osCA, err := x509.NewCertificateAuthorityFromCertificateAndKey(bundle.Certs.OS)
	if err != nil {
		return nil, fmt.Errorf("OS CA: %w", err)
	}

	maintCA, err := x509.NewSelfSignedCertificateAuthority(x509.Organization("talos maintenance"), x509.ECDSA(true))
	if err != nil {
		return nil, err
	}

	c := &Cluster{sc: sc, bundle: bundle, osCA: osCA, maintenanceCA: maintCA, byName: map[string]*Node{}, joins: map[string]int{}, calls: newCallLog()}

	for _, spec := range sc.Nodes {
		n := &Node{c: c, spec: spec, name: spec.Name, version: spec.Version, schematic: spec.Schematic, maintenance: spec.Maintenance, pulled: map[string]bool{}}
		n.mac, n.uuid = identity(spec)

		if err := n.setAddr(spec.Address); err != nil {
			return nil, err
		}

		if !spec.Maintenance {
			cfg, err := nodeConfig(sc, bundle, spec.Role, installerImage(spec.Schematic, spec.Version))
			if err != nil {
				return nil, fmt.Errorf("node %s: generating its config: %w", spec.Name, err)
			}

			n.active, n.persistent = cfg, cfg
		}

		c.nodes = append(c.nodes, n)
		c.byName[n.name] = n
	}

	if sc.Etcd.Bootstrapped {
		c.bootstrapped = true

		for _, n := range c.nodes {
			// A reflashed control plane's old member is still listed, down: etcd never heard it leave.
			if n.controlPlane() && (!n.maintenance || n.spec.Etcd.Stale) {
				n.etcdData = !n.maintenance
				c.join(n)
			}
		}
	}

	return c, nil
}

// identity is what makes a scenario node a machine: its link's permanent MAC and its SMBIOS UUID
// (by default derived from its name: a locally administered MAC, a name-based UUID).
func identity(spec *NodeSpec) (net.HardwareAddr, string) {
	sum := sha256.Sum256([]byte("machine " + spec.Name))

	mac := net.HardwareAddr(append([]byte{0x02}, sum[:5]...))

	switch spec.MAC {
	case "none":
		mac = nil
	case "":
	default:
		mac, _ = net.ParseMAC(spec.MAC) //nolint:errcheck // validated with the scenario
	}

	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte("machine "+spec.Name)).String()

	switch spec.UUID {
	case "none":
		id = ""
	case "":
	default:
		id = strings.ToLower(spec.UUID)
	}

	return mac, id
}

// setAddr puts the node at an address: its API certificates name the new IP (Talos regenerates
// them when the node's addresses change) and its etcd member advertises it (Talos's
// AdvertisedPeerController updates the member's peer URLs).
func (n *Node) setAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}

	if host == n.ip && n.serving.Certificate != nil {
		n.addr = addr

		return nil
	}

	if n.serving, err = serverCertificate(n.c.osCA, n.name, host); err != nil {
		return err
	}

	if n.maintCert, err = serverCertificate(n.c.maintenanceCA, n.name, host); err != nil {
		return err
	}

	if m := n.c.member(n.name); m != nil && n.etcdData {
		m.ip = host
	}

	n.addr, n.ip = addr, host

	return nil
}

// configuredAddr is where a config puts the node: the first IPv4 address of its link configs
// (Talos puts it on the link), on the API port; without one, the scenario's address (DHCP's).
func (n *Node) configuredAddr(cfg coreconfig.Provider) string {
	_, port, _ := net.SplitHostPort(n.spec.Address) //nolint:errcheck // validated with the scenario

	if cfg != nil {
		for _, link := range cfg.NetworkCommonLinkConfigs() {
			for _, a := range link.Addresses() {
				if a.Address().Addr().Is4() {
					return net.JoinHostPort(a.Address().Addr().String(), port)
				}
			}
		}
	}

	return n.spec.Address
}

func serverCertificate(ca *x509.CertificateAuthority, name, ip string) (stdtls.Certificate, error) {
	kp, err := x509.NewKeyPair(ca,
		x509.CommonName(name),
		x509.IPAddresses([]net.IP{net.ParseIP(ip)}),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
		x509.NotAfter(time.Now().Add(24*time.Hour)),
	)
	if err != nil {
		return stdtls.Certificate{}, fmt.Errorf("certificate for %s: %w", ip, err)
	}

	return *kp.Certificate, nil
}

// start brings every node up (after its boot delay).
func (c *Cluster) start() error {
	for _, n := range c.nodes {
		if d := n.spec.BootDelayMs; d > 0 {
			c.mu.Lock()
			gen := n.gen
			c.mu.Unlock()

			time.AfterFunc(time.Duration(d)*time.Millisecond, func() { n.bootIf(gen, "up") })

			continue
		}

		if err := n.boot("up"); err != nil {
			return err
		}
	}

	return nil
}

func (c *Cluster) stop() {
	for _, n := range c.nodes {
		n.goDown(false)
	}
}

// goDown takes the node off the network: its listener closes at once; its connections close at once too
// (a crash), or, on a sequence's way down, once the replies already given have gone out (stopAfterReplies).
func (n *Node) goDown(afterReplies bool) {
	n.c.mu.Lock()
	srv := n.srv
	n.srv, n.up = nil, false
	n.gen++
	n.stopAPIServer()
	n.c.mu.Unlock()

	switch {
	case srv == nil:
	case afterReplies:
		stopAfterReplies(srv)
	default:
		srv.Stop()
	}
}

// stopAfterRepliesBound is how long a call still open may hold the way down before the connections are cut:
// Talos's apid and machined give their gRPC servers 10 s (internal/app/apid/service.go:161,
// internal/app/machined/pkg/system/services/machined.go:265, Talos v1.13.0).
const stopAfterRepliesBound = 10 * time.Second

// stopAfterReplies ends the node's API as Talos ends apid's and machined's on the way down
// (pkg/grpc/factory/factory.go:256-272, ServerGracefulStop: GracefulStop, then Stop once it returned or its
// timeout passed). A reply a handler returned is only queued for the connection's writer when the call ends
// (grpc-go v1.79.3 server.go:1537, WriteStatus; the trailer is queued at internal/transport/http2_server.go:1336,
// finishStream), and Stop closes the connection at once, dropping what is still queued (http2_server.go:1282-1284): a node taken
// down by Stop lost a reply it had given whenever the writer ran late, as it does under load. GracefulStop
// sends GOAWAY behind what is queued and closes each connection only after its writer flushed it
// (internal/transport/controlbuf.go:586-593, 830-832); the bound is for calls that are still open (a hung one).
func stopAfterReplies(srv *grpc.Server) {
	stopped := make(chan struct{})

	go func() {
		defer close(stopped)

		srv.GracefulStop()
	}()

	select {
	case <-stopped:
	case <-time.After(stopAfterRepliesBound):
	}

	srv.Stop()
}

// disrupt runs what a reboot, upgrade, install or reset does: down now, back after the outcome's delay.
//
// The node answers the call that triggered it first, as Talos runs its sequences after replying (Talos v1.13.0
// internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:360-376 Reboot, 547-596 Upgrade, 720-736
// Reset: the sequence starts in a goroutine and the handler returns its reply), and its reply reaches the
// client before the node goes (stopAfterReplies) unless the script loses it (Outcome.ReplyLost: the call is
// held, and its connection is cut).
func (n *Node) disrupt(o Outcome, prepare func()) {
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.goDown(!o.ReplyLost)

		n.c.mu.Lock()
		if prepare != nil {
			prepare()
		}
		gen := n.gen
		n.c.mu.Unlock()

		if o.Result == "never" {
			log.Printf("%s: down for good", n.name)

			return
		}

		time.AfterFunc(time.Duration(o.DownMs)*time.Millisecond, func() { n.bootIf(gen, o.Result) })
	}()
}

// powerCycle is the control API's crash: the node goes down at once, with no sequence run.
func (n *Node) powerCycle(o Outcome) {
	n.goDown(false)

	n.c.mu.Lock()
	gen := n.gen
	n.c.mu.Unlock()

	if o.Result != "never" {
		time.AfterFunc(time.Duration(o.DownMs)*time.Millisecond, func() { n.bootIf(gen, o.Result) })
	}
}

func (n *Node) bootIf(gen int, result string) {
	n.c.mu.Lock()
	current := n.gen == gen
	n.c.mu.Unlock()

	if current {
		if err := n.boot(result); err != nil {
			log.Printf("%s: boot failed: %s", n.name, err)
		}
	}
}

// boot brings the node up as `result` says: what it staged takes effect, etcd rejoins, a new boot ID.
func (n *Node) boot(result string) error {
	c := n.c

	c.mu.Lock()
	defer c.mu.Unlock()

	switch result {
	case "old-version":
		n.pendingVer, n.pendingSch = "", ""
	case "maintenance":
		n.maintenance = true
		n.active, n.persistent = nil, nil
		n.etcdData = false
		n.files = nil // a reset wipes EPHEMERAL, /var
		n.pendingVer, n.pendingSch = "", ""
	default:
		if n.pendingVer != "" {
			n.version, n.schematic = n.pendingVer, n.pendingSch
		}

		n.pendingVer, n.pendingSch = "", ""
	}

	// A staged config becomes the active one on boot, with the address it gives the node.
	if n.persistent != nil {
		n.active = n.persistent
	}

	if !n.maintenance {
		n.writeUserFiles()

		for path, content := range n.spec.RewrittenAfterBoot {
			if n.files == nil {
				n.files = map[string]string{}
			}

			n.files[path] = content
		}
	}

	if err := n.setAddr(n.configuredAddr(n.active)); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", n.name, err)
	}

	n.staged = false
	n.neverReady = result == "not-ready"
	n.ready = false
	n.upgrading = false
	n.bootID = uuid.NewString()
	n.bootedAt = time.Now()
	n.gen++
	gen := n.gen

	// A control plane that boots with a config starts etcd (etcd.go, startEtcd): as the member its
	// data directory holds, else it joins a bootstrapped cluster (a fresh install, or a wiped disk).
	n.etcdJoinErr, n.etcdFailed, n.booted = "", "", false

	if n.controlPlane() && !n.maintenance {
		c.startEtcd(n, gen)
		c.bootTimeout(n, gen)
	}

	n.st = state.WrapCore(namespaced.NewState(inmem.Build))
	if err := n.writeResources(); err != nil {
		lis.Close() //nolint:errcheck

		return err
	}

	n.srv = n.newServer()
	n.up = true
	srv := n.srv

	// When etcd is healthy at the boot the pods are rendered before the kubelet's first poll. A kindness,
	// so a test's kubelet that polls rarely starts with its pods: Talos's kubelet depends on cri alone
	// (internal/app/machined/pkg/system/services/kubelet.go:111-113 at v1.13.0), may first poll before
	// they are rendered, and then takes them at its next poll (20 s later). The upgrader waits either way.
	if n.controlPlane() && !n.maintenance && n.etcdData && c.quorum() {
		n.renderStaticPods()
	}

	n.startKubelet()
	n.startStaticPodController()
	n.startAPIServer()
	n.watchNodeStatus()

	go func() {
		if err := srv.Serve(lis); err != nil && err != grpc.ErrServerStopped {
			log.Printf("%s: serve: %s", n.name, err)
		}
	}()

	if !n.neverReady {
		time.AfterFunc(time.Duration(n.spec.ReadyAfterMs)*time.Millisecond, func() {
			c.mu.Lock()
			defer c.mu.Unlock()

			if n.gen == gen && n.up {
				n.ready = true
				n.writeMachineStatus() //nolint:errcheck
			}
		})
	}

	log.Printf("%s: up (%s, version %s, maintenance %v, boot %s)", n.name, n.addr, n.version, n.maintenance, n.bootID)

	return nil
}

// move is a config applied without a reboot that gives the node another address: Talos moves the
// address on the link, so the API stops answering at the old one and answers at the new one,
// with the same boot.
func (n *Node) move(addr string) {
	go func() {
		time.Sleep(50 * time.Millisecond)

		c := n.c
		c.mu.Lock()
		srv, gen := n.srv, n.gen
		n.srv = nil
		c.mu.Unlock()

		if srv != nil { // the reply to the apply that moved it goes out first
			stopAfterReplies(srv)
		}

		lis, err := net.Listen("tcp", addr)

		c.mu.Lock()
		defer c.mu.Unlock()

		if n.gen != gen || !n.up { // it went down meanwhile: its next boot listens where its config says
			if lis != nil {
				lis.Close() //nolint:errcheck
			}

			return
		}

		if err == nil {
			err = n.setAddr(addr)
		}

		if err == nil {
			err = n.writeResources()
		}

		if err != nil {
			log.Printf("%s: moving to %s: %s", n.name, addr, err)

			if lis != nil {
				lis.Close() //nolint:errcheck
			}

			n.up = false
			n.stopAPIServer()

			return
		}

		n.srv = n.newServer()
		srv = n.srv

		go func() {
			if err := srv.Serve(lis); err != nil && err != grpc.ErrServerStopped {
				log.Printf("%s: serve: %s", n.name, err)
			}
		}()

		log.Printf("%s: moved to %s", n.name, addr)
	}()
}

func (c *Cluster) member(name string) *member {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}

	return nil
}

// put creates or replaces a resource in the node's state.
func put(st state.State, r resource.Resource) error {
	ctx := context.Background()

	cur, err := st.Get(ctx, r.Metadata())
	if state.IsNotFoundError(err) {
		return st.Create(ctx, r)
	}

	if err != nil {
		return err
	}

	r.Metadata().SetVersion(cur.Metadata().Version())

	return st.Update(ctx, r)
}

// writeResources publishes what the node's COSI state shows after a boot.
func (n *Node) writeResources() error {
	if err := n.writeMachineStatus(); err != nil {
		return err
	}

	if err := n.writeConfigs(); err != nil {
		return err
	}

	if n.schematic != "" {
		ext := runtime.NewExtensionStatus(runtime.NamespaceName, "0")
		*ext.TypedSpec() = extensions.Layer{Image: "0.sqsh", Metadata: extensions.Metadata{Name: "schematic", Version: n.schematic}}

		if err := put(n.st, ext); err != nil {
			return err
		}
	}

	v := runtime.NewVersion()
	v.TypedSpec().Version = n.version
	v.TypedSpec().Name = "Talos"

	if err := put(n.st, v); err != nil {
		return err
	}

	if err := n.writeCmdline(); err != nil {
		return err
	}

	if err := n.writeDisks(); err != nil {
		return err
	}

	return n.writeHardware()
}

// linkName is the node's one physical link, as Talos names an onboard NIC.
const linkName = "end0"

// writeHardware publishes what identifies the machine: SMBIOS (when its firmware has one), its
// link with the permanent address the driver reports, and the address the link carries.
func (n *Node) writeHardware() error {
	if n.uuid != "" {
		si := hardware.NewSystemInformation(hardware.SystemInformationID)
		*si.TypedSpec() = hardware.SystemInformationSpec{Manufacturer: "talos-api", ProductName: "stand-in", UUID: n.uuid, SerialNumber: n.name}

		if h := n.spec.Hardware; h != nil && h.System != nil {
			*si.TypedSpec() = hardware.SystemInformationSpec{
				Manufacturer: h.System.Manufacturer, ProductName: h.System.ProductName, Version: h.System.Version,
				SerialNumber: h.System.SerialNumber, UUID: n.uuid, SKUNumber: h.System.SKUNumber,
			}
		}

		if err := put(n.st, si); err != nil {
			return err
		}
	}

	lo := network.NewLinkStatus(network.NamespaceName, "lo")
	*lo.TypedSpec() = network.LinkStatusSpec{Index: 1, Type: nethelpers.LinkLoopbck, OperationalState: nethelpers.OperStateUnknown, MTU: 65536}

	hw := n.mac
	if hw == nil { // a driver without a permanent address: a random one each boot
		sum := sha256.Sum256([]byte(n.name + n.bootID))
		hw = append([]byte{0x06}, sum[:5]...)
	}

	link := network.NewLinkStatus(network.NamespaceName, linkName)
	*link.TypedSpec() = network.LinkStatusSpec{
		Index: 2, Type: nethelpers.LinkEther, Alias: "lan0", OperationalState: nethelpers.OperStateUp, MTU: 1500, LinkState: true,
		HardwareAddr: nethelpers.HardwareAddr(hw), PermanentAddr: nethelpers.HardwareAddr(n.mac), BroadcastAddr: nethelpers.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}

	if h := n.spec.Hardware; h != nil {
		// The speed ethtool reports for the link (link_status.go: SpeedMegabits), and its driver.
		link.TypedSpec().SpeedMegabits, link.TypedSpec().Driver = h.LinkSpeedMbps, h.LinkDriver
	}

	links := []resource.Resource{lo, link}
	for _, l := range n.spec.Hardware.extraLinks() {
		links = append(links, l)
	}

	for _, r := range links {
		if err := put(n.st, r); err != nil {
			return err
		}
	}

	// The addresses the links carry now: one on the physical link, the node's API address.
	list, err := n.st.List(context.Background(), resource.NewMetadata(network.NamespaceName, network.AddressStatusType, "", resource.VersionUndefined))
	if err != nil {
		return err
	}

	for _, r := range list.Items {
		if err := n.st.Destroy(context.Background(), r.Metadata()); err != nil {
			return err
		}
	}

	// The address goes on the link the config puts it on: the physical one (or its alias), or a VLAN or
	// bond a user patch makes, where Talos's network controllers create the logical link and put the address.
	// Its LinkStatus.PermanentAddr is what the ETHTOOL_GPERMADDR ioctl answers for it
	// (internal/app/machined/pkg/controllers/network/link_status.go:207-211, 234 at v1.12.4 and v1.13.0): the
	// kernel's perm_addr, which only a NIC driver sets, so a VLAN or a bond reports none (the kernel side is
	// an assumption, not checked against its source here). Physical() is false for it (a Kind).
	carrier, index := linkName, uint32(2)

	if name, kind := n.logicalLink(); name != "" {
		logical := network.NewLinkStatus(network.NamespaceName, name)
		*logical.TypedSpec() = network.LinkStatusSpec{
			Index: 3, Type: nethelpers.LinkEther, Kind: kind, OperationalState: nethelpers.OperStateUp, MTU: 1500, LinkState: true,
			HardwareAddr: nethelpers.HardwareAddr(hw), BroadcastAddr: nethelpers.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		}

		if err := put(n.st, logical); err != nil {
			return err
		}

		carrier, index = name, 3
	}

	ip := netip.MustParseAddr(n.ip)
	addr := network.NewAddressStatus(network.NamespaceName, fmt.Sprintf("%s/%s/32", carrier, ip))
	*addr.TypedSpec() = network.AddressStatusSpec{Address: netip.PrefixFrom(ip, 32), Local: ip, LinkIndex: index, LinkName: carrier, Family: nethelpers.FamilyInet4, Scope: nethelpers.ScopeGlobal}

	return put(n.st, addr)
}

// logicalLink is the VLAN or bond the active config puts the node's address on, and its kind ("" when the
// address is on the physical link or its alias).
func (n *Node) logicalLink() (string, string) {
	if n.active == nil {
		return "", ""
	}

	for _, link := range n.active.NetworkCommonLinkConfigs() {
		for _, a := range link.Addresses() {
			if a.Address().Addr().String() != n.ip {
				continue
			}

			switch link.(type) {
			case cfgiface.NetworkVLANConfig:
				return link.Name(), "vlan"
			case cfgiface.NetworkBondConfig:
				return link.Name(), "bond"
			}

			return "", ""
		}
	}

	return "", ""
}

// writeMachineStatus is MachineStatusController's resource (internal/app/machined/pkg/controllers/runtime/
// machine_status.go at v1.12.4 and v1.13.0): the stage, "booting" until the Boot sequence ends and "running"
// after (lines 405-432), which for a control plane is only once etcd is up (etcd.go, bootDone); and ready only
// when every readiness check passes, each failing one an unmet condition (lines 143-162): "services" (a
// required service, etcd on a control plane, not running: 270-302) and "nodeReady" (the Node's Ready
// condition as NodeStatusController read it: 354-385; nodestatus.go). A scenario without the test's
// Kubernetes API has no Node to read: there readyAfterMs (or a not-ready result) stands for its readiness.
func (n *Node) writeMachineStatus() error {
	ms := runtime.NewMachineStatus()

	if n.maintenance {
		ms.TypedSpec().Stage = runtime.MachineStageMaintenance
		ms.TypedSpec().Status.Ready = true

		return put(n.st, ms)
	}

	unmet := n.unmet()

	ms.TypedSpec().Stage = runtime.MachineStageRunning
	if !n.booted {
		ms.TypedSpec().Stage = runtime.MachineStageBooting
	}

	ms.TypedSpec().Status.Ready = len(unmet) == 0
	ms.TypedSpec().Status.UnmetConditions = unmet

	return put(n.st, ms)
}

// unmet are the readiness checks that fail now (writeMachineStatus), of a configured node.
func (n *Node) unmet() []runtime.UnmetCondition {
	var unmet []runtime.UnmetCondition

	if !n.c.bootDone(n) {
		unmet = append(unmet, runtime.UnmetCondition{Name: "services", Reason: "etcd not running"})
	}

	switch {
	case n.nodeWatched && !n.nodeReady:
		unmet = append(unmet, runtime.UnmetCondition{Name: "nodeReady", Reason: n.nodeReason})
	case !n.ready:
		unmet = append(unmet, runtime.UnmetCondition{Name: "nodeReady", Reason: fmt.Sprintf("node %q is not ready", n.name)})
	}

	return unmet
}

// hostname is the one the active config gives the node (the node's name when it gives none).
func (n *Node) hostname() string {
	if n.active != nil && n.active.NetworkHostnameConfig() != nil && n.active.NetworkHostnameConfig().Hostname() != "" {
		return n.active.NetworkHostnameConfig().Hostname()
	}

	return n.name
}

func (n *Node) writeConfigs() error {
	hostname := network.NewHostnameStatus(network.NamespaceName, network.HostnameID)
	hostname.TypedSpec().Hostname = n.hostname()

	if err := put(n.st, hostname); err != nil {
		return err
	}

	for id, cfg := range map[resource.ID]coreconfig.Provider{configres.ActiveID: n.active, configres.PersistentID: n.persistent} {
		if cfg == nil {
			continue
		}

		if err := put(n.st, configres.NewMachineConfigWithID(cfg, id)); err != nil {
			return err
		}
	}

	n.renderControlPlane()

	return nil
}

// newServer is the node's API as Talos serves it: mTLS with the OS CA once configured; in
// maintenance mode a certificate no talosconfig trusts and no client certificate asked for.
func (n *Node) newServer() *grpc.Server {
	tlsConfig := &stdtls.Config{MinVersion: stdtls.VersionTLS12}

	if n.maintenance {
		tlsConfig.Certificates = []stdtls.Certificate{n.maintCert}
		tlsConfig.ClientAuth = stdtls.NoClientCert
	} else {
		pool := stdx509.NewCertPool()
		pool.AppendCertsFromPEM(n.c.osCA.CrtPEM)
		tlsConfig.Certificates = []stdtls.Certificate{n.serving}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = stdtls.RequireAndVerifyClientCert
	}

	s := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.ChainUnaryInterceptor(n.unaryInterceptor, n.hangUnary),
		grpc.ChainStreamInterceptor(n.streamInterceptor, n.hangStream),
	)

	machineapi.RegisterMachineServiceServer(s, &machineService{n: n})

	if n.lifecycleAPI() {
		machineapi.RegisterLifecycleServiceServer(s, &lifecycleService{n: n})
		machineapi.RegisterImageServiceServer(s, &imageService{n: n})
	}

	cosiv1alpha1.RegisterStateServer(s, server.NewState(state.Filter(n.st, n.accessPolicy)))
	storageapi.RegisterStorageServiceServer(s, &storageService{n: n})

	return s
}
