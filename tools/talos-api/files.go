package main

import "log"

// criCustomizationPath: filepath.Join("/etc", constants.CRICustomizationConfigPart), constants.go:595 at v1.14.0-rc.1.
const criCustomizationPath = "/etc/cri/conf.d/20-customization.part"

// writeUserFiles is Talos's WriteUserFiles task: the config's .machine.files written to disk, a phase of the Boot
// sequence and nowhere else (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go:246 at v1.14.0-rc.1,
// :228 at v1.13.0; Machine().Files() is read only by the task, v1alpha1_sequencer_tasks.go:509). So a config applied
// without a reboot leaves the files as the last boot wrote them: Talos 1.14 takes a files change "live" (liveConfig)
// and the file changes at the next boot only. The files live under /var, which a reboot keeps (:570-582: a path
// outside /var is written there and bind-mounted). Its operations (:517-547): create writes at all times, overwrite
// only over an existing file, append adds "\n" and the content to it; a failed file is skipped, as the task's
// multierror goes on with the next one. From 1.14 the legacy CRI customization file is never written: the task skips
// its path after the op checks (v1alpha1_sequencer_tasks.go:565-568 at v1.14.0-rc.1), the CRI controller reading it
// from the config (pkg/machinery/config/types/v1alpha1/v1alpha1_cri_bridge.go:50-65); 1.13 wrote it (:621-627,
// 683-686 at v1.13.0). Called with the cluster's lock held, from boot.
func (n *Node) writeUserFiles() {
	if n.active == nil || n.active.Machine() == nil {
		return
	}

	files, err := n.active.Machine().Files()
	if err != nil {
		log.Printf("%s: error generating extra files: %s", n.name, err)

		return
	}

	if n.files == nil {
		n.files = map[string]string{}
	}

	for _, f := range files {
		old, exists := n.files[f.Path()]
		content := f.Content()

		switch f.Op() {
		case "create":
		case "overwrite":
			if !exists {
				continue
			}
		case "append":
			if !exists {
				continue
			}

			content = old + "\n" + f.Content()
		default:
			log.Printf("%s: unknown operation for file %q: %q", n.name, f.Path(), f.Op())

			continue
		}

		if n.liveConfig() && f.Path() == criCustomizationPath {
			continue
		}

		n.files[f.Path()] = content
	}
}
