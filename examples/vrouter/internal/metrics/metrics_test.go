package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestExposition(t *testing.T) {
	var r Registry
	r.Register(func(f []Family) []Family {
		return append(f, Family{Name: "vrouter_rx_packets_total", Help: "Packets received.", Type: "counter",
			Samples: []Sample{{Labels: []string{"interface", "pod1"}, Value: 42}}})
	})
	r.Register(func(f []Family) []Family {
		return append(f,
			Family{Name: "vrouter_rx_packets_total", Type: "counter",
				Samples: []Sample{{Labels: []string{"interface", `we"ird`}, Value: 1}}},
			Family{Name: "vrouter_drops_total", Help: "Drops.", Type: "counter",
				Samples: []Sample{{Labels: []string{"reason", "spoofed", "interface", "pod1"}, Value: 3}}})
	})
	srv := httptest.NewServer(&r)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := `# HELP vrouter_drops_total Drops.
# TYPE vrouter_drops_total counter
vrouter_drops_total{reason="spoofed",interface="pod1"} 3
# HELP vrouter_rx_packets_total Packets received.
# TYPE vrouter_rx_packets_total counter
vrouter_rx_packets_total{interface="pod1"} 42
vrouter_rx_packets_total{interface="we\"ird"} 1
`
	if string(body) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", body, want)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
}
