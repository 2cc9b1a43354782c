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
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
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
	members      []*member // etcd members, in join order

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
	addr string
	ip   string

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

	active     coreconfig.Provider
	persistent coreconfig.Provider
	pulled     map[string]bool
	etcdData   bool

	st  state.State
	srv *grpc.Server
}

func (n *Node) controlPlane() bool { return n.spec.Role == "controlplane" }

// lifecycleAPI: Talos 1.13 added the Lifecycle and Image services (talosctl's range is >1.13.0-alpha.2).
func (n *Node) lifecycleAPI() bool {
	return !strings.HasPrefix(n.version, "v1.12.") && !strings.HasPrefix(n.version, "v1.11.")
}

func memberID(name string) uint64 {
	sum := sha256.Sum256([]byte("etcd member " + name))

	return binary.BigEndian.Uint64(sum[:8])
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

	c := &Cluster{sc: sc, bundle: bundle, osCA: osCA, maintenanceCA: maintCA, byName: map[string]*Node{}, calls: newCallLog()}

	for _, spec := range sc.Nodes {
		host, _, _ := net.SplitHostPort(spec.Address)
		n := &Node{c: c, spec: spec, name: spec.Name, addr: spec.Address, ip: host, version: spec.Version, schematic: spec.Schematic, maintenance: spec.Maintenance, pulled: map[string]bool{}}

		if n.serving, err = serverCertificate(osCA, n.name, host); err != nil {
			return nil, err
		}

		if n.maintCert, err = serverCertificate(maintCA, n.name, host); err != nil {
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
			if n.controlPlane() && !n.maintenance {
				n.etcdData = true
				c.members = append(c.members, &member{name: n.name, id: memberID(n.name), ip: n.ip})
			}
		}
	}

	return c, nil
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
		n.goDown()
	}
}

// goDown takes the node off the network: its listener and every connection close at once.
func (n *Node) goDown() {
	n.c.mu.Lock()
	srv := n.srv
	n.srv, n.up = nil, false
	n.gen++
	n.c.mu.Unlock()

	if srv != nil {
		srv.Stop()
	}
}

// disrupt runs what a reboot, upgrade, install or reset does: down now, back after the outcome's delay.
//
// The node answers the call that triggered it first, as Talos runs its sequences after replying.
func (n *Node) disrupt(o Outcome, prepare func()) {
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.goDown()

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
	n.goDown()

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

	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", n.name, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	switch result {
	case "old-version":
		n.pendingVer, n.pendingSch = "", ""
	case "maintenance":
		n.maintenance = true
		n.active, n.persistent = nil, nil
		n.etcdData = false
		n.pendingVer, n.pendingSch = "", ""
	default:
		if n.pendingVer != "" {
			n.version, n.schematic = n.pendingVer, n.pendingSch
		}

		n.pendingVer, n.pendingSch = "", ""
	}

	// A staged config becomes the active one on boot.
	if n.persistent != nil {
		n.active = n.persistent
	}

	n.staged = false
	n.neverReady = result == "not-ready"
	n.ready = false
	n.upgrading = false
	n.bootID = uuid.NewString()
	n.bootedAt = time.Now()
	n.gen++
	gen := n.gen

	// A control plane that boots with a config into a bootstrapped cluster joins etcd.
	if c.bootstrapped && n.controlPlane() && !n.maintenance {
		n.etcdData = true

		if c.member(n.name) == nil {
			c.members = append(c.members, &member{name: n.name, id: memberID(n.name), ip: n.ip})
		}
	}

	n.st = state.WrapCore(namespaced.NewState(inmem.Build))
	if err := n.writeResources(); err != nil {
		lis.Close() //nolint:errcheck

		return err
	}

	n.srv = n.newServer()
	n.up = true
	srv := n.srv

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

	return put(n.st, v)
}

func (n *Node) writeMachineStatus() error {
	ms := runtime.NewMachineStatus()

	switch {
	case n.maintenance:
		ms.TypedSpec().Stage = runtime.MachineStageMaintenance
		ms.TypedSpec().Status.Ready = true
	default:
		ms.TypedSpec().Stage = runtime.MachineStageRunning
		ms.TypedSpec().Status.Ready = n.ready

		if !n.ready {
			ms.TypedSpec().Status.UnmetConditions = []runtime.UnmetCondition{{Name: "nodeReady", Reason: fmt.Sprintf("node %q is not ready", n.name)}}
		}
	}

	return put(n.st, ms)
}

func (n *Node) writeConfigs() error {
	for id, cfg := range map[resource.ID]coreconfig.Provider{configres.ActiveID: n.active, configres.PersistentID: n.persistent} {
		if cfg == nil {
			continue
		}

		if err := put(n.st, configres.NewMachineConfigWithID(cfg, id)); err != nil {
			return err
		}
	}

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
		grpc.ChainUnaryInterceptor(n.unaryInterceptor),
		grpc.ChainStreamInterceptor(n.streamInterceptor),
	)

	machineapi.RegisterMachineServiceServer(s, &machineService{n: n})

	if n.lifecycleAPI() {
		machineapi.RegisterLifecycleServiceServer(s, &lifecycleService{n: n})
		machineapi.RegisterImageServiceServer(s, &imageService{n: n})
	}

	cosiv1alpha1.RegisterStateServer(s, server.NewState(state.Filter(n.st, cosiAccess)))

	return s
}

// cosiAccess is Talos's access policy for the one sensitive resource the stand-in holds.
func cosiAccess(ctx context.Context, access state.Access) error {
	if access.ResourceType == configres.MachineConfigType && !rolesOf(ctx).Includes(role.Admin) {
		return status.Error(codes.PermissionDenied, "not authorized")
	}

	return nil
}
