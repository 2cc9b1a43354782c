package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// stdin as the program sends apply's (components/arda.py): a Ceph host's, hooks and all.
const applyStdin = `{"hooks": {"after": [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-unset"}}],
	"before": [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-set"}}]},
	"machineConfig": "# worker config for arda", "talosconfig": "# talosconfig for arda"}`

func TestCheckInputIsTheCommandsOwnReading(t *testing.T) {
	apply := []string{"apply", "--node", "tirion=192.168.0.22", "--role", "worker", "--timeout", "45m"}

	for _, tc := range []struct {
		name  string
		argv  []string
		stdin string
		code  int
		line  string
	}{
		{name: "apply as the program runs it", argv: apply, stdin: applyStdin},
		{
			// The program's form before issue #38, which a delete still reads from the state: a list of one.
			name:  "a hook as one Job, not a list (issue #38)",
			argv:  apply,
			stdin: strings.Replace(applyStdin, `"after": [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-unset"}}]`, `"after": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-unset"}}`, 1),
		},
		{
			name:  "a hook as one object that is no Job",
			argv:  apply,
			stdin: strings.Replace(applyStdin, `"after": [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-unset"}}]`, `"after": {"kind": "Job"}`, 1),
			code:  exitUsage,
			line:  "upgrader: apply: stdin: hooks.after[0] must be a batch/v1 Job with a name",
		},
		{name: "apply's delete reads the same stdin", argv: []string{"reset", "--node", "tirion=192.168.0.22", "--mode", "auto", "--timeout", "20m"}, stdin: applyStdin},
		{name: "a required key", argv: apply, stdin: `{"talosconfig": "t"}`, code: exitUsage, line: `upgrader: apply: stdin: "machineConfig" is required`},
		{name: "a flag", argv: []string{"bootstrap", "--node", "taniquetil=192.168.0.21"}, code: exitUsage, line: "upgrader: bootstrap: --timeout is required (a duration such as 15m)"},
		{name: "a flag's value", argv: []string{"wait-kube", "--nodes", "gandalf,Saruman", "--timeout", "1m"}, stdin: `{"kubeconfig": "k"}`, code: exitUsage, line: `upgrader: wait-kube: --nodes: "Saruman" is not a node name`},
		{name: "a gate's manifests", argv: []string{"wait-kube", "--admits", "--timeout", "10m"}, stdin: `{"kubeconfig": "k"}`, code: exitUsage, line: `upgrader: wait-kube: stdin: "manifests" is required`},
		{name: "one of two keys", argv: []string{"kubernetes-preflight", "--to", "v1.34.1", "--timeout", "5m"}, code: exitUsage, line: "upgrader: kubernetes-preflight: stdin: give a kubeconfig, or a talosconfig to fetch one with"},
		{
			name:  "kubernetes-upgrade: a config for every node named",
			argv:  []string{"kubernetes-upgrade", "--to", "v1.35.0", "--control-plane", "taniquetil=192.168.0.21", "--worker", "tirion=192.168.0.22", "--timeout", "60m"},
			stdin: `{"talosconfig": "t", "machineConfigs": {"taniquetil": "# controlplane config for arda", "tirion": "# worker config for arda"}}`,
		},
		{
			name:  "kubernetes-upgrade: a node without its config",
			argv:  []string{"kubernetes-upgrade", "--to", "v1.35.0", "--control-plane", "taniquetil=192.168.0.21", "--worker", "tirion=192.168.0.22", "--timeout", "60m"},
			stdin: `{"talosconfig": "t", "machineConfigs": {"taniquetil": "# controlplane config for arda"}}`,
			code:  exitUsage,
			line:  "upgrader: kubernetes-upgrade: stdin: machineConfigs.tirion is required (the node's new machine config)",
		},
		{name: "the content is the command's to check", argv: []string{"probe", "--node", "tirion=192.168.0.22"}, stdin: `{"talosconfig": "[secret]"}`},
		{name: "no command", code: exitUsage, line: "upgrader: check-input: give the command to check: check-input -- COMMAND [flags]"},
		{name: "not a command", argv: []string{"check-input", "--batch"}, code: exitUsage, line: `upgrader: check-input: unknown command "check-input"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, line := checked(tc.argv, strings.NewReader(tc.stdin))
			if code != tc.code || line != tc.line {
				t.Fatalf("checked = %d, %q; want %d, %q", code, line, tc.code, tc.line)
			}
		})
	}
}

func TestCheckInputBatch(t *testing.T) {
	in := `{"args": ["bootstrap", "--node", "taniquetil=192.168.0.21", "--timeout", "30m"], "stdin": "{\"talosconfig\": \"t\"}"}

{"args": ["bootstrap", "--node", "taniquetil=192.168.0.21", "--timeout", "30m"], "stdin": ""}
`

	var out bytes.Buffer
	if code := batch(strings.NewReader(in), &out); code != exitOK {
		t.Fatalf("batch = %d", code)
	}

	want := `{"error":"","exit":0}
{"error":"upgrader: bootstrap: stdin: \"talosconfig\" is required","exit":2}
`
	if out.String() != want {
		t.Fatalf("batch printed %q; want %q", out.String(), want)
	}

	out.Reset()

	if code := batch(strings.NewReader(`{"argv": ["probe"]}`), &out); code != exitUsage || out.Len() != 0 {
		t.Fatalf("a line of another shape: %d, %q", code, out.String())
	}
}

// What client-go logs on an error it also returns (here the read of a body whose context a SIGTERM cancelled) never
// reaches stderr, where every line is the upgrader's own.
func TestClientGoLogsNothingOnStderr(t *testing.T) {
	read, write, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}

	saved := os.Stderr
	os.Stderr = write

	quietClientGo()
	klog.ErrorS(context.Canceled, "Unexpected error when reading response body")
	klog.Flush()

	os.Stderr = saved

	if err := write.Close(); err != nil {
		t.Fatal(err)
	}

	got, err := io.ReadAll(read)
	if err != nil {
		t.Fatal(err)
	}

	if len(got) != 0 {
		t.Fatalf("stderr got client-go's line: %q", got)
	}
}
