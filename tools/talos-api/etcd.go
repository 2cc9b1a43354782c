package main

// Each control plane's own etcd, as Talos runs it: its data directory (empty or holding a cluster),
// the etcd service's state while it pulls its image and waits to join, and what a Bootstrap does to
// it. "The cluster" (Cluster.members) is the one nodes with an empty data directory join; a node
// whose data directory holds another one (etcdOwn) is a second cluster, which GET /etcd/clusters
// shows. Line numbers are Talos v1.12.4's, then v1.13.0's.

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdDataPath is constants.EtcdDataPath (pkg/machinery/constants/constants.go:490, :452), a
// directory of the ETCD volume owned by etcd's user, 60 (EtcdUserID), mode 0700
// (internal/app/machined/pkg/controllers/block/internal/volumes/volumeconfig/system_volumes.go:317-325, :318-326).
const (
	etcdDataPath = "/var/lib/etcd"
	etcdUserID   = 60
)

// startEtcd is the etcd service starting on a configured control plane's boot
// (internal/app/machined/pkg/system/services/etcd.go, PreFunc: 86-135, 88-143). The service is
// "Preparing" from PreFunc's start (internal/app/machined/pkg/system/service_runner.go:258, :262)
// until it runs: PreFunc pulls etcd's image (etcd.go:103, :105; a reflashed node has none, and pulls
// it for tens of seconds: JoinAfterMs), then, with an empty data directory, joins
// (argsForControlPlane: 493-517, 509-534, through buildInitialCluster: 305-374, 314-383, which asks
// every 3 s for up to EtcdJoinTimeout, 30 minutes, constants.go:964, :920: waitToJoin). With a filled
// data directory it runs as the member that directory holds, whichever cluster that is.
func (c *Cluster) startEtcd(n *Node, gen int) {
	n.etcdPulling, n.etcdPullRelease = false, nil

	switch {
	case n.ownEtcd() != nil: // the only member of its own cluster
	case n.etcdData:
		if c.bootstrapped && c.member(n.name) == nil {
			c.join(n)
		}
	case n.spec.Etcd.JoinAfterMs > 0 || n.spec.Etcd.PullHeld:
		n.etcdPulling = true

		pulled := func() {
			c.mu.Lock()
			defer c.mu.Unlock()

			// A reboot, or a Bootstrap that stopped this etcd meanwhile, ends this pull.
			if n.gen != gen || !n.up || !n.etcdPulling {
				return
			}

			n.etcdPulling = false

			c.waitToJoin(n, gen)
			n.writeMachineStatus() //nolint:errcheck
		}

		// A held pull (a test control, no Talos behaviour: scenario.go, MemberSpec.PullHeld) ends once the
		// test released it, whenever that is.
		if n.spec.Etcd.PullHeld {
			n.etcdPullRelease = pulled

			return
		}

		time.AfterFunc(time.Duration(n.spec.Etcd.JoinAfterMs)*time.Millisecond, pulled)
	default:
		c.waitToJoin(n, gen)
	}
}

// waitToJoin is buildInitialCluster (etcd.go:305-374 at v1.12.4, 314-383 at v1.13.0): with an empty data
// directory etcd asks to join (addMember) until it is let in, as long as the cluster is bootstrapped (a
// Bootstrap joins the ones waiting meanwhile: bootstrapEtcd), and keeps the service Preparing while it
// asks. It asks for EtcdJoinTimeout (retry.Constant(constants.EtcdJoinTimeout), the scenario's
// etcd.joinTimeoutMs), then PreFunc fails, and the service is Failed (service_runner.go:261, :265;
// system.go:200, the same at both tags): no restart until the next boot, or a Bootstrap.
func (c *Cluster) waitToJoin(n *Node, gen int) {
	if c.bootstrapped {
		c.joinEtcd(n)
	}

	time.AfterFunc(time.Duration(c.sc.Etcd.JoinTimeoutMs)*time.Millisecond, func() {
		c.mu.Lock()
		defer c.mu.Unlock()

		if n.gen != gen || !n.up || n.etcdData || n.etcdFailed != "" {
			return
		}

		last := n.etcdJoinErr
		if last == "" { // nothing to join: no etcd answers the node's discovered control planes
			last = "error getting etcd member list: context deadline exceeded"
		}

		n.etcdFailed = "Failed to run pre stage: failed to build cluster arguments: " + last
		n.etcdJoinErr = ""

		log.Printf("%s: etcd gave up joining after %d ms: Failed", n.name, c.sc.Etcd.JoinTimeoutMs)
		n.writeMachineStatus() //nolint:errcheck
	})
}

// etcdServiceState is the etcd service's state as ServiceList names it ("" where there is none).
func (n *Node) etcdServiceState() string {
	switch {
	case !n.controlPlane() || n.maintenance:
		return ""
	case n.etcdFailed != "":
		return "Failed"
	case !n.etcdData:
		return "Preparing"
	}

	return "Running"
}

// stage is MachineStatus's stage (writeMachineStatus).
func (n *Node) stage() string {
	switch {
	case n.maintenance:
		return "maintenance"
	case n.booted:
		return "running"
	}

	return "booting"
}

// bootDone: the node's Boot sequence has ended. Its last phase, StartAllServices, waits until every
// service it started is up, etcd on a control plane (internal/app/machined/pkg/runtime/v1alpha1/
// v1alpha1_sequencer_tasks.go:419-497 at v1.12.4, 428-506 at v1.13.0; a service is up when running and healthy,
// service_runner.go:444-458), so a control plane's MachineStatus is "booting" until its etcd runs
// (a worker's at once, the kubelet not modelled). Once ended, the stage stays "running" this boot.
func (c *Cluster) bootDone(n *Node) bool {
	etcdUp := !n.controlPlane() || (n.etcdData && n.etcdFailed == "")
	if etcdUp {
		n.booted = true
	}

	return etcdUp
}

// bootTimeout is StartAllServices' bound, BootTimeout, 70 minutes (v1alpha1_sequencer_tasks.go:475 at
// v1.12.4, :484 at v1.13.0; constants.go:956, :909; the scenario's etcd.bootTimeoutMs): a control plane
// whose etcd is not up by then fails its Boot sequence, machined's run() returns that error
// (internal/app/machined/main.go:273-275 at v1.12.4) and handle() reboots the machine (main.go:100-150,
// 345); the next boot starts etcd's join anew.
func (c *Cluster) bootTimeout(n *Node, gen int) {
	time.AfterFunc(time.Duration(c.sc.Etcd.BootTimeoutMs)*time.Millisecond, func() {
		c.mu.Lock()
		defer c.mu.Unlock()

		if n.gen != gen || !n.up || n.booted || c.bootDone(n) {
			return
		}

		log.Printf("%s: boot sequence timed out after %d ms (etcd not up): rebooting", n.name, c.sc.Etcd.BootTimeoutMs)
		n.disrupt(n.spec.Reboot, nil)
	})
}

// bootstrapEtcd is BootstrapEtcd (etcd.go:650-689, :669-705), which Bootstrap runs once its own
// checks passed (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:417-450,
// :423-456: CRI up, a control plane, time in sync, an empty data directory, and nothing else): the
// etcd service is stopped whatever it was doing, pulling its image or waiting to join alike, and a
// new one started with Bootstrap set, which on an empty data directory is
// `--initial-cluster-state=new` with the node its only member (etcd.go:493-517, :509-534). That is a
// new cluster whatever other cluster exists: a second one beside a cluster another node's data
// directory holds (etcdOwn), else the cluster the others join (a fresh one, or the first after every
// control plane lost its data; a member etcd still listed from before goes with the old cluster).
func (c *Cluster) bootstrapEtcd(n *Node) {
	holders := c.holders() // Bootstrap refused a node that holds one: n holds none
	n.etcdPulling, n.etcdPullRelease, n.etcdJoinErr, n.etcdFailed, n.etcdData = false, nil, "", "", true

	defer n.writeMachineStatus() //nolint:errcheck

	if c.bootstrapped && len(holders) > 0 {
		n.etcdOwn = &member{name: n.name, id: c.nextMemberID(n.name), ip: n.ip}
		log.Printf("%s: etcd bootstrapped as a new one-member cluster (member %016x) beside the one %s hold: two clusters", n.name, n.etcdOwn.id, strings.Join(holders, ", "))

		return
	}

	c.bootstrapped, c.members, n.etcdOwn = true, nil, nil
	c.join(n)

	// Every other control plane waiting to join (its image pulled, not given up) joins it.
	for _, other := range c.nodes {
		if other != n && other.controlPlane() && other.up && !other.maintenance && !other.etcdData && !other.etcdPulling && other.etcdFailed == "" {
			other.etcdData, other.etcdOwn, other.etcdJoinErr = true, nil, ""
			c.join(other)
			other.writeMachineStatus() //nolint:errcheck
		}
	}
}

// holders are the control planes whose data directory holds the cluster (up or not).
func (c *Cluster) holders() []string {
	var out []string

	for _, n := range c.nodes {
		if n.controlPlane() && n.etcdData && n.etcdOwn == nil {
			out = append(out, n.name)
		}
	}

	return out
}

// ownEtcd is the member the node is in a cluster of its own (nil when it holds none, or the cluster).
func (n *Node) ownEtcd() *member {
	if n.etcdData && n.etcdOwn != nil {
		return n.etcdOwn
	}

	return nil
}

// ownMemberList is what EtcdMemberList answers on a node with a cluster of its own: that one member.
// Asked without QueryLocal, Talos's client picks among every discovered control plane's etcd at random
// (internal/pkg/etcd/etcd.go:81-91, endpoints.go:23-48 at both tags), which includes its own; the
// stand-in answers from its own.
func ownMemberList(own *member) *machineapi.EtcdMemberListResponse {
	return &machineapi.EtcdMemberListResponse{Messages: []*machineapi.EtcdMembers{{
		LegacyMembers: []string{own.name},
		Members: []*machineapi.EtcdMember{{
			Id:         own.id,
			Hostname:   own.name,
			PeerUrls:   []string{fmt.Sprintf("https://%s:2380", own.ip)},
			ClientUrls: []string{fmt.Sprintf("https://%s:2379", own.ip)},
		}},
	}}}
}

// List is MachineService.List (v1alpha1_server.go:823-929, :856-962) for the one directory the
// stand-in has, etcd's data directory: what Bootstrap itself reads (os.ReadDir(EtcdDataPath),
// v1alpha1_server.go:435, :441). Not recursive, the walker sends the directory itself (RelativeName
// ".") and then each entry in it, without descending (pkg/archiver/walker.go:83-191, atMaxDepth
// 196-207, the same at both tags); etcd keeps everything under `member/`. Any other path is not
// modelled, and said so.
func (s *machineService) List(in *machineapi.ListRequest, srv machineapi.MachineService_ListServer) error {
	n := s.n
	n.c.mu.Lock()
	legacy := s.legacyMaintenance()
	// Where the ETCD volume is: a configured control plane (an assumption for the others, not checked
	// against the source: the volume is asked for by the etcd service, Volumes(), etcd.go:167-172).
	exists := n.controlPlane() && !n.maintenance
	filled := n.etcdData
	n.c.mu.Unlock()

	if legacy {
		return s.unimplemented("List")
	}

	root := "/" + strings.TrimPrefix(in.GetRoot(), "/")
	if root = strings.TrimSuffix(root, "/"); root == "" {
		root = "/"
	}

	if root != etcdDataPath {
		return status.Errorf(codes.Unimplemented, "talos-api: List serves only %s", etcdDataPath)
	}

	if !exists {
		return fmt.Errorf("lstat %s: no such file or directory", root)
	}

	dir := func(name, rel string) *machineapi.FileInfo {
		return &machineapi.FileInfo{Name: name, RelativeName: rel, Size: 4096, Mode: uint32(os.ModeDir | 0o700), Modified: time.Now().Unix(), IsDir: true, Uid: etcdUserID, Gid: etcdUserID}
	}

	if err := srv.Send(dir(root, ".")); err != nil {
		return err
	}

	if filled {
		return srv.Send(dir(root+"/member", "member"))
	}

	return nil
}

// etcdCluster is one cluster, as GET /etcd/clusters shows it: its members as etcd lists them, and
// the nodes whose data directory holds it.
type etcdCluster struct {
	Members []string `json:"members"`
	Holders []string `json:"holders"`
}

// etcdControl serves GET /etcd/clusters: {"clusters": [...]}, the cluster first, then every node's
// own, in the scenario's order. Two entries are a split etcd.
func (c *Cluster) etcdControl(mux *http.ServeMux) {
	mux.HandleFunc("GET /etcd/clusters", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()

		clusters := []etcdCluster{}

		main := etcdCluster{Members: []string{}, Holders: c.holders()}
		if c.bootstrapped {
			for _, m := range c.members {
				main.Members = append(main.Members, m.name)
			}
		}

		if main.Holders == nil {
			main.Holders = []string{}
		}

		slices.Sort(main.Members)
		slices.Sort(main.Holders)

		if len(main.Members) > 0 || len(main.Holders) > 0 {
			clusters = append(clusters, main)
		}

		for _, n := range c.nodes {
			if own := n.ownEtcd(); own != nil {
				clusters = append(clusters, etcdCluster{Members: []string{own.name}, Holders: []string{n.name}})
			}
		}

		writeJSON(w, map[string]any{"clusters": clusters})
	})
}

// defaultEtcd is DefaultEtcdVersion (pkg/machinery/constants/constants.go) of each Talos release the scenarios run:
// v1.11.0 :459 "v3.6.4", v1.12.4 :466 "v3.6.7", v1.12.11 :466 "v3.6.11", v1.13.0 :428 "v3.6.9", v1.13.9 :428
// "v3.6.12", v1.14.1 :443 "3.7.1" (and v1.14.0-rc.1 :443); a release not listed runs its minor's first listed one.
var defaultEtcd = map[string]string{
	"v1.11.0": "3.6.4", "v1.12.4": "3.6.7", "v1.12.11": "3.6.11", "v1.13.0": "3.6.9", "v1.13.9": "3.6.12", "v1.14.1": "3.7.1",
}

var defaultEtcdOfMinor = map[string]string{"v1.11": "3.6.4", "v1.12": "3.6.7", "v1.13": "3.6.9", "v1.14": "3.7.1"}

// etcdVersion is the etcd server version the node's member reports (EtcdStatus's protocol_version, etcd's own
// StatusResponse.Version: v1alpha1_server.go:2218 at v1.14.0-rc.1). Talos runs `cluster.etcd.image` when the config
// sets it, else registry.k8s.io/etcd:<DefaultEtcdVersion> of the Talos it runs (machinery config/types/v1alpha1/
// v1alpha1_etcdconfig.go:16-24, EtcdConfig.Image; read by the etcd config controller, internal/app/machined/pkg/
// controllers/etcd/config.go:68, and pulled and run by the etcd service, internal/app/machined/pkg/system/services/
// etcd.go:103-119, at v1.14.0-rc.1), so an upgrade's reboot moves it with the Talos version.
func (n *Node) etcdVersion() string {
	if n.active != nil && n.active.RawV1Alpha1() != nil && n.active.RawV1Alpha1().ClusterConfig != nil {
		if e := n.active.RawV1Alpha1().ClusterConfig.EtcdConfig; e != nil && e.ContainerImage != "" {
			_, tag, _ := strings.Cut(e.ContainerImage[strings.LastIndex(e.ContainerImage, "/")+1:], ":")

			return strings.TrimPrefix(tag, "v")
		}
	}

	if v, ok := defaultEtcd[n.version]; ok {
		return v
	}

	parts := strings.SplitN(n.version, ".", 3)
	if len(parts) < 2 {
		return ""
	}

	return defaultEtcdOfMinor[parts[0]+"."+parts[1]]
}

// etcdStorageVersion is the cluster's storage version, which follows its cluster version, the lowest minor any member
// runs (etcd server/etcdserver/version/monitor.go:55-120 at v3.7.1: decideClusterVersion from
// membersMinimalServerVersion, then UpdateStorageVersionIfNeeded), as "3.6.0". Mixed 3.6 and 3.7 members: 3.6 until
// the last runs 3.7. (A member that is down keeps its last version here; etcd leaves the cluster version unchanged
// while it cannot read one, monitor.go:76-78, which for an upgrade is the same answer.)
func (c *Cluster) etcdStorageVersion() string {
	low := ""

	for _, m := range c.members {
		mn := c.byName[m.name]
		if mn == nil {
			continue
		}

		parts := strings.SplitN(mn.etcdVersion(), ".", 3)
		if len(parts) < 2 {
			continue
		}

		minor := parts[0] + "." + parts[1]
		if low == "" || semverLess(minor, low) {
			low = minor
		}
	}

	if low == "" {
		return ""
	}

	return low + ".0"
}

// semverLess compares two "major.minor" versions.
func semverLess(a, b string) bool {
	var am, an, bm, bn int

	fmt.Sscanf(a, "%d.%d", &am, &an) //nolint:errcheck
	fmt.Sscanf(b, "%d.%d", &bm, &bn) //nolint:errcheck

	return am < bm || (am == bm && an < bn)
}
