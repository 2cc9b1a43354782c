package discovery

import (
	"strings"
	"testing"
)

// Review 1 HIGH 2: every string a machine sends is one printable line, and an escaped one is told by its backslash.
func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Samsung SSD 860", "Samsung SSD 860"},
		{"model\nconfig:\n  x: 1", `model\x0aconfig:\x0a  x: 1`},
		{"a\r\nb", `a\x0d\x0ab`},
		{"line\u2028sep", `line\u2028sep`},
		{"bell\x07", `bell\x07`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`back\slash`, `back\\slash`},
		{"ümlaut", "ümlaut"},
	} {
		if got := Printable(tc.in); got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}

		if got := Printable(tc.in); strings.ContainsAny(got, "\n\r\u2028\u2029") {
			t.Errorf("Printable(%q) = %q still breaks a line", tc.in, got)
		}
	}
}

// Review 1 MEDIUM 4: the discovery window is bounded at the command line, and --arm and --disarm exclude each other.
func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--arm=30s"}, "--arm 30s: a discovery window is open from 1m0s to 12h0m0s"},
		{[]string{"--arm=13h"}, "--arm 13h0m0s: a discovery window is open from 1m0s to 12h0m0s"},
		{[]string{"--arm=30m", "--disarm"}, "--arm and --disarm: give one"},
		{[]string{"--arm=30m"}, ""},
		{[]string{"--disarm"}, ""},
	} {
		_, err := Parse(tc.args, nil)

		got := ""
		if err != nil {
			got = err.Error()
		}

		if got != tc.want {
			t.Errorf("Parse(%v) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// A lease is asked until it has looked expired for clockSlack on this machine's clock.
func TestToAskToleratesAClockAheadOfThePis(t *testing.T) {
	const now = 1_000_000

	for _, tc := range []struct {
		name   string
		lease  Lease
		expect bool
	}{
		{"live", Lease{Hostname: "discovery-amd64-x", Expiry: now + 60}, true},
		{"infinite", Lease{Hostname: "discovery-amd64-x"}, true},
		{"laptop two minutes ahead", Lease{Hostname: "discovery-amd64-x", Expiry: now - 120}, true},
		{"just within the slack", Lease{Hostname: "discovery-amd64-x", Expiry: now - clockSlack + 1}, true},
		{"gone for the slack", Lease{Hostname: "discovery-amd64-x", Expiry: now - clockSlack}, false},
		{"not discovery", Lease{Hostname: "gandalf", Expiry: now + 60}, false},
	} {
		if got := toAsk(tc.lease, "discovery-", now); got != tc.expect {
			t.Errorf("%s: toAsk = %v, want %v", tc.name, got, tc.expect)
		}
	}
}
