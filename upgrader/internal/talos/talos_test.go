package talos

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/iluvatar/upgrader/internal/input"
)

func TestInstallerImage(t *testing.T) {
	const schematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

	for _, tc := range []struct {
		image, version, schematic string
	}{
		{image: "factory.talos.dev/metal-installer/" + schematic + ":v1.13.0", version: "v1.13.0", schematic: schematic},
		{image: "factory.talos.dev/metal-installer/" + schematic + ":v1.13.0@sha256:abcd", version: "v1.13.0", schematic: schematic},
		{image: "ghcr.io/siderolabs/installer:v1.12.4", version: "v1.12.4"},
		{image: "localhost:5000/installer", version: ""},
	} {
		t.Run(tc.image, func(t *testing.T) {
			if version, schematic := ParseInstaller(tc.image); version != tc.version || schematic != tc.schematic {
				t.Fatalf("ParseInstaller = %q, %q; want %q, %q", version, schematic, tc.version, tc.schematic)
			}
		})
	}
}

func TestMachineUUID(t *testing.T) {
	for id, usable := range map[string]bool{
		"4c4c4544-0042-3510-8052-b4c04f4e3132": true,
		"00000000-0000-0000-0000-000000000000": false,
		"ffffffff-ffff-ffff-ffff-ffffffffffff": false,
		"03000200-0400-0500-0006-000700080009": false, // AMI's default
		"not a uuid":                           false,
	} {
		if usableUUID(id) != usable {
			t.Errorf("usableUUID(%q) = %v", id, !usable)
		}
	}
}

// A worker's step with no kubeconfig on stdin and no control plane to ask says why, never `%!w(<nil>)`: a
// talosconfig without endpoints is one no client can be made for.
func TestFetchKubeconfigSaysWhyNoneCameBack(t *testing.T) {
	talosconfig := "context: arda\ncontexts:\n    arda:\n        endpoints: []\n        ca: \"\"\n        crt: \"\"\n        key: \"\"\n"

	tc, err := New(&input.Secrets{Talosconfig: talosconfig})
	if err != nil {
		t.Fatal(err)
	}

	_, err = tc.FetchKubeconfig(context.Background(), input.Node{Name: "istari-1", IP: "192.0.2.1", Addr: "192.0.2.1:50000"}, false)
	if err == nil || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "the control planes: ") {
		t.Fatalf("FetchKubeconfig = %v", err)
	}
}

// etcd supports members one minor apart while a cluster rolls (3.6 and 3.7 during Talos 1.13 -> 1.14), never further.
func TestMinorsApart(t *testing.T) {
	for _, tc := range []struct {
		versions map[string]string
		err      string
	}{
		{versions: map[string]string{"a": "3.6.12", "b": "3.6.12"}},
		{versions: map[string]string{"a": "3.7.1", "b": "3.6.12", "c": "3.6.12"}},
		{versions: map[string]string{"a": "3.7.1", "b": "unknown"}},
		{versions: map[string]string{"a": "3.7.1", "b": "3.5.21"}, err: "members run etcd more than one minor apart (b 3.5.21, a 3.7.1): etcd upgrades one minor at a time"},
		{versions: map[string]string{"a": "4.0.0", "b": "3.7.1"}, err: "members run etcd more than one minor apart (b 3.7.1, a 4.0.0): etcd upgrades one minor at a time"},
	} {
		err := minorsApart(tc.versions)
		if got := fmt.Sprint(err); (tc.err == "" && err != nil) || (tc.err != "" && got != tc.err) {
			t.Errorf("minorsApart(%v) = %v, want %q", tc.versions, err, tc.err)
		}
	}
}
