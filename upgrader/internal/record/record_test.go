package record

import (
	"testing"

	"github.com/iluvatar/upgrader/internal/input"
)

func TestLastRecordFromTheStepsStdout(t *testing.T) {
	tirion := input.Node{Name: "tirion", IP: "192.168.0.22", Addr: "192.168.0.22:50000"}

	for _, tc := range []struct {
		name   string
		stdout string
		want   *Record
	}{
		{name: "none", stdout: ""},
		{name: "not a record", stdout: "upgrader: tirion: healthy\n"},
		{name: "another node's", stdout: `{"node": "alqualonde", "ip": "192.168.0.23"}`},
		{name: "no address", stdout: `{"node": "tirion", "ip": "tirion.lan"}`},
		{
			name:   "the last line",
			stdout: "something else\n" + `{"node": "tirion", "ip": "192.168.0.12", "machine": "02:7a:1c:00:00:01", "etcdMember": "8e9e05c52164694d"}` + "\n",
			want:   &Record{Node: "tirion", IP: "192.168.0.12", Machine: "02:7a:1c:00:00:01", EtcdMember: "8e9e05c52164694d"},
		},
		{
			name:   "a member ID that is none is dropped",
			stdout: `{"node": "tirion", "ip": "192.168.0.22", "etcdMember": "tirion"}`,
			want:   &Record{Node: "tirion", IP: "192.168.0.22"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(Env, tc.stdout)

			got := Last(tirion)
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("Last = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestRecordedAddress(t *testing.T) {
	now := input.Node{Name: "tirion", IP: "192.168.0.22", Addr: "192.168.0.22:41234"}
	rec := &Record{Node: "tirion", IP: "192.168.0.12", EtcdMember: "8e9e05c52164694d"}

	if !rec.Moved(now) || (&Record{Node: "tirion", IP: "192.168.0.22"}).Moved(now) || (*Record)(nil).Moved(now) {
		t.Fatal("Moved: only a record of another address moved")
	}

	if at := rec.At(now); at != (input.Node{Name: "tirion", IP: "192.168.0.12", Addr: "192.168.0.12:41234"}) {
		t.Fatalf("At = %+v: the recorded address on this run's port", at)
	}

	if rec.MemberID() != 0x8e9e05c52164694d || (*Record)(nil).MemberID() != 0 {
		t.Fatal("MemberID")
	}
}
