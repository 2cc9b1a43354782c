package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

func loadConfig(raw []byte) (coreconfig.Provider, error) {
	return configloader.NewFromBytes(raw)
}

// NodeState is what GET /nodes reports of a node: what it runs now.
type NodeState struct {
	Name         string `json:"name"`
	Address      string `json:"address"` // where it answers now (its config's link address moves it)
	Up           bool   `json:"up"`
	Maintenance  bool   `json:"maintenance"`
	Version      string `json:"version"`
	Schematic    string `json:"schematic"`
	BootID       string `json:"bootId"`
	Ready        bool   `json:"ready"`          // MachineStatus's readiness (writeMachineStatus)
	InstallImage string `json:"installImage"`   // the active config's machine.install.image
	Staged       bool   `json:"staged"`         // a staged config waits for the next reboot
	PendingVer   string `json:"pendingVersion"` // installed by an upgrade, booted on the next reboot
	Installing   bool   `json:"installing"`     // an installer runs (LifecycleService's lock is held: lifecycle.go)
	EtcdMember   bool   `json:"etcdMember"`
	EtcdMemberID string `json:"etcdMemberId"` // its member's ID (%016x), "" when not a member
	EtcdVersion  string `json:"etcdVersion"`  // the etcd its member runs (etcd.go, etcdVersion), "" when not a member
	EtcdJoinErr  string `json:"etcdJoinError"`
	EtcdService  string `json:"etcdService"` // the etcd service's state, as ServiceList names it ("" on a worker)
	Stage        string `json:"stage"`       // MachineStatus's stage (booting, running, maintenance)
	Cmdline      string `json:"cmdline"`     // the kernel command line it booted with (cmdline.go)
	// Files: .machine.files as the boots wrote them to disk (files.go), by path.
	Files map[string]string `json:"files"`
}

func (c *Cluster) controlHandler() http.Handler {
	mux := http.NewServeMux()

	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, c.calls.all())
	})

	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()

		out := map[string]NodeState{}

		for _, n := range c.nodes {
			s := NodeState{
				Name: n.name, Address: n.addr, Up: n.up, Maintenance: n.maintenance, Version: n.version, Schematic: n.schematic,
				BootID: n.bootID, Ready: n.maintenance || len(n.unmet()) == 0, Staged: n.staged, PendingVer: n.pendingVer, Installing: n.upgrading, EtcdMember: c.member(n.name) != nil,
				EtcdJoinErr: n.etcdJoinErr, EtcdService: n.etcdServiceState(), Stage: n.stage(), Cmdline: n.c.cmdline(n),
				Files: maps.Clone(n.files),
			}
			if m := c.member(n.name); m != nil {
				s.EtcdMemberID = fmt.Sprintf("%016x", m.id)
				s.EtcdVersion = n.etcdVersion()
			}
			if n.active != nil && n.active.Machine() != nil {
				s.InstallImage = n.active.Machine().Install().Image()
			}

			out[n.name] = s
		}

		writeJSON(w, out)
	})

	mux.HandleFunc("GET /etcd", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()

		names := []string{}
		for _, m := range c.members {
			names = append(names, m.name)
		}

		sort.Strings(names)
		writeJSON(w, map[string]any{"bootstrapped": c.bootstrapped, "members": names})
	})

	// GET /etcd/clusters: every etcd cluster a data directory holds (etcd.go).
	c.etcdControl(mux)

	// POST /nodes/NAME merges a partial NodeSpec into the node's script; /nodes/NAME/crash takes it down;
	// /nodes/NAME/kubelet-restart restarts its kubelet; /nodes/NAME/installer-release ends the installer its
	// script holds (a test control, UpgradeOutcome.Held) and holds no later one, Conflict when none is held;
	// /nodes/NAME/etcd-pull-release likewise ends its held etcd image pull (MemberSpec.PullHeld).
	mux.HandleFunc("POST /nodes/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/nodes/")
		name, action, _ := strings.Cut(rest, "/")

		c.mu.Lock()
		n := c.byName[name]
		c.mu.Unlock()

		if n == nil {
			http.Error(w, "no node "+name, http.StatusNotFound)

			return
		}

		switch action {
		case "":
			c.mu.Lock()
			spec := *n.spec
			err := json.NewDecoder(r.Body).Decode(&spec)

			if err == nil {
				err = spec.validate()
			}

			if err == nil {
				*n.spec = spec
			}
			c.mu.Unlock()

			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)

				return
			}
		case "crash":
			var o Outcome
			if err := json.NewDecoder(r.Body).Decode(&o); err != nil || !results[o.Result] {
				http.Error(w, "an Outcome is expected", http.StatusBadRequest)

				return
			}

			n.powerCycle(o)
		case "installer-release":
			c.mu.Lock()
			release := n.installRelease
			n.installRelease = nil
			n.spec.Upgrade.Held = false
			c.mu.Unlock()

			if release == nil {
				http.Error(w, "no held installer runs on "+name, http.StatusConflict)

				return
			}

			close(release)
		case "etcd-pull-release":
			c.mu.Lock()
			release := n.etcdPullRelease
			n.etcdPullRelease = nil
			n.spec.Etcd.PullHeld = false
			c.mu.Unlock()

			if release == nil {
				http.Error(w, "no held etcd image pull on "+name, http.StatusConflict)

				return
			}

			release()
		case "kubelet-restart":
			// `talosctl service kubelet restart`: a new kubelet, which reads the static pod URL at once.
			c.mu.Lock()
			n.kubeletRestarts++
			c.mu.Unlock()
		default:
			http.Error(w, "unknown action "+action, http.StatusNotFound)

			return
		}

		writeJSON(w, map[string]bool{"ok": true})
	})

	// POST /etcd replaces the raised alarms (membership and bootstrap follow what the nodes do).
	mux.HandleFunc("POST /etcd", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Alarms []AlarmSpec `json:"alarms"`
		}

		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()

		if err := dec.Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)

			return
		}

		c.mu.Lock()
		defer c.mu.Unlock()

		for _, a := range body.Alarms {
			if c.byName[a.Node] == nil {
				http.Error(w, "no node "+a.Node, http.StatusBadRequest)

				return
			}
		}

		c.sc.Etcd.Alarms = body.Alarms
		writeJSON(w, map[string]bool{"ok": true})
	})

	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}
