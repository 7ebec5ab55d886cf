package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
)

// TestReloadAgainstRunning: each reload is checked against the config running, not
// the one the vRouter started with. Before, a VRF appended by one reload could be
// removed or replaced by the next (ReloadCheck compared with the start-up config,
// which lacked it), though removing a VRF is refused as needing a restart.
func TestReloadAgainstRunning(t *testing.T) {
	r, good, start, logs := reloadRouter(t)
	path := filepath.Join(t.TempDir(), "node1.yaml")
	blue := "\n  - name: blue\n    vni: 200\n    label: 200\n    routes:\n      - prefix: 10.2.0.0/16\n        remote: node2\ninterfaces:"
	steps := []struct {
		file string
		want string // in the log line of the reload
	}{
		{strings.Replace(string(good), "\ninterfaces:", blue, 1), "routes reloaded"},
		{string(good), "blue removed"},
		{strings.Replace(string(good), "\ninterfaces:", strings.Replace(blue, "blue", "green", 1), 1), "vrfs[1] is green instead of blue"},
	}
	cur := start
	for i, s := range steps {
		if err := os.WriteFile(path, []byte(s.file), 0o600); err != nil {
			t.Fatal(err)
		}
		logs.Reset()
		cur = r.reload(path, cur)
		if !strings.Contains(logs.String(), s.want) {
			t.Errorf("reload %d: log %q, want %q", i+1, logs.String(), s.want)
		}
	}
	if len(cur.VRFs) != 2 || cur.VRFs[1].Name != "blue" {
		t.Errorf("running config has VRFs %+v, want red and blue", cur.VRFs)
	}
}

// TestReloadUplinkMTU: a reload rereads the uplink interface's MTU, which the tunnels
// take as their path MTU, and keeps the last one when the interface cannot be read.
// Before, the MTU read at start stayed until a restart, so after "ip link set ul1 mtu
// 9000" the vRouter kept refusing (and answering "fragmentation needed" for) packets
// the uplink now carried. The uplink here is lo, whose 65536 also checks that an MTU
// above IP's 65535 does not fail the tunnels' options.
func TestReloadUplinkMTU(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip(err)
	}
	r, good, start, logs := reloadRouter(t)
	r.ulMTU = 1500
	path := filepath.Join(t.TempDir(), "node1.yaml")
	for _, c := range []struct{ iface, want string }{{"lo", "uplink MTU changed"}, {"nosuch0", "uplink MTU not reread"}} {
		file := strings.Replace(string(good), "interface: ul1", "interface: "+c.iface, 1)
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		run := *start
		run.Uplink.Interface = c.iface // the uplink may not change on a reload
		logs.Reset()
		if cur := r.reload(path, &run); cur == &run {
			t.Fatalf("%s: reload refused: %s", c.iface, logs.String())
		}
		if !strings.Contains(logs.String(), c.want) {
			t.Errorf("%s: log %q, want %q", c.iface, logs.String(), c.want)
		}
		if want := lo.MTU; r.ulMTU != want {
			t.Errorf("%s: uplink MTU %d after the reload, want %d", c.iface, r.ulMTU, want)
		}
	}
}

// reloadRouter returns a router for reload tests, logging into logs, with the
// interfaces of testdata/node1.yaml, that file's bytes and its config.
func reloadRouter(t *testing.T) (r *router, file []byte, cfg *config.Config, logs *bytes.Buffer) {
	t.Helper()
	file, err := os.ReadFile("testdata/node1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Parse(file); err != nil {
		t.Fatal(err)
	}
	logs = &bytes.Buffer{}
	r = bareRouter(t)
	r.log = slog.New(slog.NewTextHandler(logs, nil))
	r.names = map[string]int{"uplink": 0, "pod1": 1, "dpdk1": 2, "exception": 3}
	return r, file, cfg, logs
}
