package apply

import (
	"errors"
	"strings"
	"testing"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// Talos v1.13.0's CanApplyImmediate list (v1alpha1_runtime.go:149-174), tested at its boundary: a field on the list
// applies live, one beside it needs a reboot.
func TestCanApplyImmediateIsTalos113sList(t *testing.T) {
	const base = `version: v1alpha1
machine:
  type: controlplane
  sysctls:
    vm.max_map_count: "65530"
  files:
    - content: "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
      permissions: 0o644
      path: /var/etc/kubernetes/authentication.yaml
      op: create
  features:
    kubePrism:
      enabled: true
      port: 7445
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
`
	for name, tc := range map[string]struct {
		from, to string
		reboot   []string // the fields named, nil: applies live
	}{
		"unchanged":                    {`vm.max_map_count: "65530"`, `vm.max_map_count: "65530"`, nil},
		"a sysctl (on the list)":       {`vm.max_map_count: "65530"`, `vm.max_map_count: "262144"`, nil},
		"the cluster (on the list)":    {`endpoint: https://10.0.0.10:6443`, `endpoint: https://10.0.0.11:6443`, nil},
		"kubePrism (a listed feature)": {`port: 7445`, `port: 7446`, nil},
		"a machine file (sign-in's)":   {`AuthenticationConfiguration\n`, `AuthenticationConfiguration\njwt: []\n`, []string{".machine.files"}},
		"the debug flag (on the list)": {`version: v1alpha1`, "version: v1alpha1\ndebug: true", nil},
		"the machine type (not on it)": {`type: controlplane`, `type: worker`, []string{".machine.type"}},
		"an env variable (not on it)":  {`type: controlplane`, "type: controlplane\n  env:\n    GRPC_GO_LOG_SEVERITY_LEVEL: info", []string{".machine.env"}},
	} {
		t.Run(name, func(t *testing.T) {
			from := load(t, base)
			to := load(t, strings.Replace(base, tc.from, tc.to, 1))

			err := canApplyImmediate(from, to, false)
			if tc.reboot == nil {
				if err != nil {
					t.Fatalf("applies live in Talos 1.13, got %v", err)
				}

				return
			}

			var ni *notImmediate
			if !errors.As(err, &ni) {
				t.Fatalf("needs a reboot in Talos 1.13, got %v", err)
			}

			if strings.Join(ni.fields, ",") != strings.Join(tc.reboot, ",") {
				t.Errorf("fields %v, want %v", ni.fields, tc.reboot)
			}

			if !strings.HasPrefix(err.Error(), "this config change can't be applied in immediate mode\ndiff:\n") {
				t.Errorf("Talos's words: %q", err.Error())
			}
		})
	}
}

// From Talos 1.14 the legacy CRI customization file and .machine.baseRuntimeSpecOverrides apply live
// (v1alpha1_sequencer_tasks.go:565-568, hack/release.toml :109-145 at v1.14.0-rc.1): with liveCRI they alone never
// ask for a reboot; any other file beside them still does. Without it (1.13's list) every one of them does.
func TestTheCRICustomizationAppliesLiveFromTalos114(t *testing.T) {
	const criEntry = `    - content: "[plugins]\n  device_ownership_from_security_context = false\n"
      permissions: 0o644
      path: /etc/cri/conf.d/20-customization.part
      op: create
`

	const base = `version: v1alpha1
machine:
  type: worker
  baseRuntimeSpecOverrides:
    process:
      rlimits:
        - type: RLIMIT_NOFILE
          hard: 1024
          soft: 1024
  files:
` + criEntry + `    - content: "one\n"
      permissions: 0o644
      path: /var/etc/other.conf
      op: create
cluster:
  controlPlane:
    endpoint: https://10.0.0.10:6443
`
	for name, tc := range map[string]struct {
		swap  []string // old, new pairs
		on114 []string // the fields named on 1.14, nil: applies live
	}{
		"the CRI file's content": {[]string{"context = false", "context = true"}, nil},
		"the base runtime spec":  {[]string{"hard: 1024", "hard: 4096"}, nil},
		"the CRI file taken out": {[]string{criEntry, ""}, nil},
		"another file beside it": {[]string{"one", "two"}, []string{".machine.files"}},
		"another file and the CRI's": {
			[]string{"one", "two", "context = false", "context = true"}, []string{".machine.files"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			from := load(t, base)

			text := strings.NewReplacer(tc.swap...).Replace(base)
			if text == base {
				t.Fatalf("%q is not in the base config", tc.swap)
			}

			to := load(t, text)

			var ni *notImmediate
			if err := canApplyImmediate(from, to, false); !errors.As(err, &ni) {
				t.Errorf("needs a reboot on Talos 1.13, got %v", err)
			}

			err := canApplyImmediate(from, to, true)
			if tc.on114 == nil {
				if err != nil {
					t.Fatalf("applies live on Talos 1.14, got %v", err)
				}

				return
			}

			if !errors.As(err, &ni) || strings.Join(ni.fields, ",") != strings.Join(tc.on114, ",") {
				t.Errorf("needs a reboot on Talos 1.14 for %v, got %v", tc.on114, err)
			}
		})
	}

	for tag, live := range map[string]bool{"v1.13.9": false, "v1.14.0-rc.1": true, "v1.14.1": true, "unknown": false} {
		if criLive(tag) != live {
			t.Errorf("criLive(%q) = %v", tag, !live)
		}
	}
}

func TestTheUpgraderDecidesTheRebootFromTalos114(t *testing.T) {
	for tag, decides := range map[string]bool{
		"v1.12.4":         false,
		"v1.13.9":         false,
		"v1.14.0-rc.1":    true,
		"v1.14.1":         true,
		"v1.15.0-alpha.0": true,
		"unknown":         false, // Talos's own dry run decides
	} {
		if decidesReboot(tag) != decides {
			t.Errorf("decidesReboot(%q) = %v", tag, !decides)
		}
	}
}

// load parses a machine config document as the node's machinery does.
func load(t *testing.T, text string) coreconfig.Provider {
	t.Helper()

	cfg, err := configloader.NewFromBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}

	return cfg
}
