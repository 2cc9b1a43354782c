// Which config changes a running Talos takes without a reboot: Talos 1.13's own rule, kept here for 1.14 and later.

package apply

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
)

// Talos 1.14 asks CanApplyImmediate no more: AUTO is always NO_REBOOT, dry run included
// (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:239-240 at v1.14.0-rc.1, against :233,243 at
// v1.13.0), "an apply config followed by a proper reboot is a better flow" (commit 995bc30d5). But what 1.13 refused
// live still acts only at boot on 1.14: .machine.files is written by WriteUserFiles, a phase of Sequencer.Boot alone
// (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go:246 at v1.14.0-rc.1, the newest 1.14 tag in the
// mirror; Machine().Files() is read only there, v1alpha1_sequencer_tasks.go:509), and Iluvatar puts the API server's
// AuthenticationConfiguration there (plans/apiserver.py). A 1.14 node would take such a change "live" and keep the old
// file until some reboot nobody checks. So from 1.14 on the upgrader decides the reboot itself, with 1.13's list,
// less what 1.14 itself moved to live controllers (liveOn114 below).

// decidesReboot: the running Talos no longer decides (1.14 and later), so the upgrader does (canApplyImmediate).
func decidesReboot(running string) bool {
	minor, ok := minorOf(running)

	return ok && minor >= 14
}

// criCustomizationPath is Talos's legacy CRI customization file (filepath.Join("/etc",
// constants.CRICustomizationConfigPart): pkg/machinery/constants/constants.go:595 at v1.14.0-rc.1).
const criCustomizationPath = "/etc/cri/conf.d/20-customization.part"

// criLive: the running Talos applies the legacy CRI customization file and .machine.baseRuntimeSpecOverrides live
// and never writes that file (1.14 and later). WriteUserFiles skips the path (v1alpha1_sequencer_tasks.go:565-568 at
// v1.14.0-rc.1); the CRI controllers read both from the config in memory (v1alpha1_cri_bridge.go:24-65,
// controllers/cri/runtime_spec_config.go:95) and restart CRI; hack/release.toml notes.cri-customization (:109-122:
// "a machine reboot is no longer required to apply changes to CRI configuration") and notes.cri-base-runtime-spec
// (:124-145: "A machine reboot is no longer required"). 1.13 wrote the file at boot (v1alpha1_sequencer_tasks.go:621-627,
// 683-686 at v1.13.0), and its own CanApplyImmediate decides there.
func criLive(running string) bool {
	minor, ok := minorOf(running)

	return ok && minor >= 14
}

// canApplyImmediate is Talos v1.13.0's Runtime.CanApplyImmediate
// (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go:129-217 at v1.13.0), field for field: the new
// v1alpha1 document with every field that applies live copied from the current one must equal the current one; else
// the error names the diff that needs a reboot. Only the v1alpha1 document is compared, as there (:136-144): the
// other documents were applied live by 1.13 too. With liveCRI (criLive: Talos 1.14 and later) the port departs from
// 1.13 where 1.14 does: the legacy CRI customization file and .machine.baseRuntimeSpecOverrides apply live too.
func canApplyImmediate(current, next coreconfig.Provider, liveCRI bool) error {
	if current == nil {
		return errors.New("no current config")
	}

	currentConfig := current.RawV1Alpha1()
	if currentConfig == nil {
		return errors.New("current config is not v1alpha1")
	}

	newConfig := next.RawV1Alpha1()
	if newConfig == nil {
		return errors.New("new config is not v1alpha1")
	}

	newConfig = newConfig.DeepCopy()

	// v1alpha1_runtime.go:149-174 at v1.13.0, the list of what applies live: .debug, .cluster, .machine.ca,
	// .machine.acceptedCAs, .machine.time, .machine.certSANs, .machine.install, .machine.network, .machine.sysfs,
	// .machine.sysctls, .machine.logging, .machine.controlplane, .machine.kubelet, .machine.kernel, .machine.registries,
	// .machine.pods, .machine.seccompProfiles, .machine.nodeAnnotations, .machine.nodeLabels, .machine.nodeTaints, and
	// .machine.features' kubernetesTalosAPIAccess, kubePrism, hostDNS, imageCache and nodeAddressSortAlgorithm.
	// Everything else (.machine.files, .machine.env, .machine.disks, .machine.udev, .machine.type, ...) needs a reboot.
	newConfig.ConfigDebug = currentConfig.ConfigDebug     // :175
	newConfig.ClusterConfig = currentConfig.ClusterConfig // :176

	if newConfig.MachineConfig != nil && currentConfig.MachineConfig != nil { // :178-205
		nm, cm := newConfig.MachineConfig, currentConfig.MachineConfig

		nm.MachineCA = cm.MachineCA
		nm.MachineAcceptedCAs = cm.MachineAcceptedCAs
		nm.MachineTime = cm.MachineTime //nolint:staticcheck // as Talos does
		nm.MachineCertSANs = cm.MachineCertSANs
		nm.MachineInstall = cm.MachineInstall
		nm.MachineNetwork = cm.MachineNetwork //nolint:staticcheck // as Talos does
		nm.MachineSysfs = cm.MachineSysfs
		nm.MachineSysctls = cm.MachineSysctls
		nm.MachineLogging = cm.MachineLogging
		nm.MachineControlPlane = cm.MachineControlPlane
		nm.MachineKubelet = cm.MachineKubelet
		nm.MachineKernel = cm.MachineKernel
		nm.MachineRegistries = cm.MachineRegistries //nolint:staticcheck // as Talos does
		nm.MachinePods = cm.MachinePods
		nm.MachineSeccompProfiles = cm.MachineSeccompProfiles
		nm.MachineNodeAnnotations = cm.MachineNodeAnnotations
		nm.MachineNodeLabels = cm.MachineNodeLabels
		nm.MachineNodeTaints = cm.MachineNodeTaints

		if nm.MachineFeatures != nil && cm.MachineFeatures != nil {
			nm.MachineFeatures.KubernetesTalosAPIAccessConfig = cm.MachineFeatures.KubernetesTalosAPIAccessConfig
			nm.MachineFeatures.KubePrismSupport = cm.MachineFeatures.KubePrismSupport
			nm.MachineFeatures.HostDNSSupport = cm.MachineFeatures.HostDNSSupport
			nm.MachineFeatures.ImageCacheSupport = cm.MachineFeatures.ImageCacheSupport
			nm.MachineFeatures.FeatureNodeAddressSortAlgorithm = cm.MachineFeatures.FeatureNodeAddressSortAlgorithm
		}

		if liveCRI {
			nm.MachineBaseRuntimeSpecOverrides = cm.MachineBaseRuntimeSpecOverrides

			// The CRI file alone may differ: every other entry must be the same, in the same order.
			if reflect.DeepEqual(withoutCRI(nm.MachineFiles), withoutCRI(cm.MachineFiles)) {
				nm.MachineFiles = cm.MachineFiles
			}
		}
	}

	if !reflect.DeepEqual(currentConfig, newConfig) { // :207-214
		diff, err := configdiff.DiffConfigs(container.NewV1Alpha1(currentConfig), container.NewV1Alpha1(newConfig))
		if err != nil {
			return fmt.Errorf("error calculating diff: %w", err)
		}

		return &notImmediate{fields: differing(currentConfig, newConfig), diff: diff}
	}

	return nil
}

// withoutCRI is a files list less the legacy CRI customization file.
func withoutCRI(files []*v1alpha1.MachineFile) []*v1alpha1.MachineFile {
	out := []*v1alpha1.MachineFile{}

	for _, f := range files {
		if f == nil || f.FilePath != criCustomizationPath {
			out = append(out, f)
		}
	}

	return out
}

// notImmediate is CanApplyImmediate's refusal, with the fields it is about named for the progress line (the diff
// itself is never printed: a machine file may hold anything).
type notImmediate struct {
	fields []string
	diff   string
}

func (e *notImmediate) Error() string {
	return fmt.Sprintf("this config change can't be applied in immediate mode\ndiff:\n%s", e.diff)
}

// differing names the v1alpha1 keys (".machine.files") whose values differ, by their YAML names.
func differing(a, b *v1alpha1.Config) []string {
	var out []string

	out = append(out, fieldsDiffering(".", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "machine")...)

	if a.MachineConfig != nil && b.MachineConfig != nil {
		out = append(out, fieldsDiffering(".machine.", reflect.ValueOf(a.MachineConfig).Elem(), reflect.ValueOf(b.MachineConfig).Elem(), "")...)
	} else if (a.MachineConfig == nil) != (b.MachineConfig == nil) {
		out = append(out, ".machine")
	}

	return out
}

func fieldsDiffering(prefix string, a, b reflect.Value, skip string) []string {
	var out []string

	for i := range a.NumField() {
		name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || name == skip {
			continue
		}

		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, prefix+name)
		}
	}

	return out
}
