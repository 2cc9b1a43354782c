package input

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNodeArgument(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want Node
		err  string
	}{
		{arg: "tirion=192.168.0.22", want: Node{Name: "tirion", IP: "192.168.0.22", Addr: "192.168.0.22:50000"}},
		{arg: "tirion=127.0.0.1:41234", want: Node{Name: "tirion", IP: "127.0.0.1", Addr: "127.0.0.1:41234"}},
		{arg: "tirion=fd00::22", want: Node{Name: "tirion", IP: "fd00::22", Addr: "[fd00::22]:50000"}},
		{arg: "tirion", err: `"tirion" is not NAME=IP`},
		{arg: "Tirion=192.168.0.22", err: `"Tirion=192.168.0.22" is not NAME=IP`},
		{arg: "tirion=tirion.lan", err: `"tirion=tirion.lan": "tirion.lan" is not an IP address`},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := parseNode(tc.arg)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("parseNode(%q) = %v, %v; want error %q", tc.arg, got, err, tc.err)
				}

				return
			}

			if err != nil || got != tc.want {
				t.Fatalf("parseNode(%q) = %v, %v; want %v", tc.arg, got, err, tc.want)
			}
		})
	}
}

func TestNodeGivenTwice(t *testing.T) {
	var l NodeList
	if err := l.Set("tirion=192.168.0.22"); err != nil {
		t.Fatal(err)
	}

	if err := l.Set("tirion=192.168.0.23"); err == nil || err.Error() != "node tirion given twice" {
		t.Fatalf("second tirion: %v", err)
	}
}

func TestFlagsRefuseStrayArguments(t *testing.T) {
	f := NewFlags("bootstrap")
	timeout := f.Timeout()

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{args: []string{"--timeout", "5m"}},
		{args: []string{"--timeout", "5m", "extra"}, err: `unexpected argument "extra"`},
		{args: []string{"--nope"}, err: "flag provided but not defined: -nope"},
		{args: []string{"--timeout", "soon"}, err: `invalid value "soon" for flag -timeout: parse error`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := f.ParseArgs(tc.args)

			var usage *UsageError
			switch {
			case tc.err == "" && (err != nil || *timeout != 5*time.Minute):
				t.Fatalf("ParseArgs(%q) = %v, --timeout %s", tc.args, err, *timeout)
			case tc.err != "" && (!errors.As(err, &usage) || usage.Msg != tc.err):
				t.Fatalf("ParseArgs(%q) = %v; want the usage error %q", tc.args, err, tc.err)
			}
		})
	}
}

func TestSecretsOnStdin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin string
		err   string
	}{
		{name: "empty is an empty object", stdin: " \n"},
		{name: "every key", stdin: `{"talosconfig": "t", "kubeconfig": "k", "machineConfig": "m", "manifests": [{"kind": "Namespace"}], "hooks": {"before": [` + job + `], "after": ["kind: Job\nmetadata: {name: b}"]}}`},
		{name: "keys match case-insensitively", stdin: `{"TalosConfig": "t"}`},
		{name: "an unknown key", stdin: `{"talosconfig": "t", "kubeconfg": "k"}`, err: `stdin is not the secrets JSON object: json: unknown field "kubeconfg"`},
		// The form the program sent until issue #38, which a delete still reads from Pulumi's state: a list of one.
		{name: "one hook Job alone", stdin: `{"hooks": {"before": ` + job + `, "after": [` + job + `]}}`},
		{name: "one hook alone that is no Job", stdin: `{"hooks": {"before": {"kind": "Job"}}}`, err: "stdin: hooks.before[0] must be a batch/v1 Job with a name"},
		{
			name:  "a hook that is neither a list nor an object",
			stdin: `{"hooks": {"before": "kind: Job"}}`,
			err:   "stdin is not the secrets JSON object: json: cannot unmarshal string into Go struct field .hooks.before of type []json.RawMessage",
		},
		{name: "not an object", stdin: `["talosconfig"]`, err: "stdin is not the secrets JSON object: json: cannot unmarshal array into Go value of type input.Secrets"},
		{name: "a decoded field is no key", stdin: `{"Objects": []}`, err: `stdin is not the secrets JSON object: json: unknown field "Objects"`},
		{name: "a manifest that is no object", stdin: `{"manifests": [{"kind": "Namespace"}, "- a list"]}`, err: "stdin: manifest 1: json: cannot unmarshal array into Go value of type map[string]interface {}"},
		{name: "an empty manifest", stdin: `{"manifests": [""]}`, err: "stdin: manifest 0: the manifest is empty"},
		{name: "a hook that is no Job", stdin: `{"hooks": {"after": [` + job + `, {"kind": "Pod", "metadata": {"name": "p"}}]}}`, err: "stdin: hooks.after[1] must be a batch/v1 Job with a name"},
		{name: "a Job without a name", stdin: `{"hooks": {"before": [{"kind": "Job"}]}}`, err: "stdin: hooks.before[0] must be a batch/v1 Job with a name"},
		{name: "a hook that is no manifest", stdin: `{"hooks": {"before": ["kind: [Job"]}}`, err: "stdin: hooks.before[0] is not a manifest: yaml: line 1: did not find expected ',' or ']'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSecrets(strings.NewReader(tc.stdin))

			var usage *UsageError
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("ReadSecrets = %v", err)
			case tc.err != "" && (!errors.As(err, &usage) || usage.Msg != tc.err):
				t.Fatalf("ReadSecrets = %v; want the usage error %q", err, tc.err)
			}
		})
	}
}

func TestRequiredSecrets(t *testing.T) {
	s, err := ReadSecrets(strings.NewReader(`{"talosconfig": "t", "manifests": []}`))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		keys []string
		err  string
	}{
		{keys: []string{"talosconfig"}},
		{keys: []string{"talosconfig", "machineConfig"}, err: `stdin: "machineConfig" is required`},
		{keys: []string{"manifests"}, err: `stdin: "manifests" is required`},
	} {
		t.Run(strings.Join(tc.keys, ","), func(t *testing.T) {
			err := s.Require(tc.keys...)
			if (tc.err == "" && err != nil) || (tc.err != "" && (err == nil || err.Error() != tc.err)) {
				t.Fatalf("Require(%q) = %v; want %q", tc.keys, err, tc.err)
			}
		})
	}
}

// job is a hook as the program sends one (plans.storage.noout_jobs), cut down.
const job = `{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ceph-noout-set", "namespace": "rook-ceph"}, "spec": {"backoffLimit": 10}}`

func TestManifestsAndHooksDecoded(t *testing.T) {
	s, err := ReadSecrets(strings.NewReader(`{"manifests": [{"kind": "A", "spec": {"replicas": 2}}, "kind: B\n"], "hooks": {"before": [` + job + `], "after": ["kind: Job\nmetadata:\n  name: ceph-noout-unset\n"]}}`))
	if err != nil {
		t.Fatal(err)
	}

	if fmt.Sprint(s.Objects) != "[map[kind:A spec:map[replicas:2]] map[kind:B]]" {
		t.Fatalf("Objects = %v", s.Objects)
	}

	if len(s.Before) != 1 || s.Before[0].Name != "ceph-noout-set" || s.Before[0].Namespace != "rook-ceph" || *s.Before[0].Spec.BackoffLimit != 10 {
		t.Fatalf("Before = %+v", s.Before)
	}

	if len(s.After) != 1 || s.After[0].Name != "ceph-noout-unset" || s.After[0].Namespace != "" {
		t.Fatalf("After = %+v: a YAML string is a Job too", s.After)
	}
}

// A hook given as one Job object (the program's form before issue #38, which a delete reads from Pulumi's state) is
// that Job, as the list of one the program sends now.
func TestOneHookAloneIsAListOfOne(t *testing.T) {
	alone, err := ReadSecrets(strings.NewReader(`{"hooks": {"before": ` + job + `, "after": ` + job + `}}`))
	if err != nil {
		t.Fatal(err)
	}

	listed, err := ReadSecrets(strings.NewReader(`{"hooks": {"before": [` + job + `], "after": [` + job + `]}}`))
	if err != nil {
		t.Fatal(err)
	}

	if !reflect.DeepEqual(alone.Before, listed.Before) || !reflect.DeepEqual(alone.After, listed.After) || len(alone.Before) != 1 || alone.Before[0].Name != "ceph-noout-set" {
		t.Fatalf("alone = %v %v; listed = %v %v", alone.Before, alone.After, listed.Before, listed.After)
	}
}
