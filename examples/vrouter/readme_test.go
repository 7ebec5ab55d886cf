package main

import (
	"os"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/examples/vrouter/internal/dataplane"
	"github.com/dpkit/dpkit/pmd"
)

// TestReadmeMetrics: the README names every metric the endpoint serves. Before, it
// named five of fifteen and described the rest as "per-interface packets and bytes,
// drops by reason".
func TestReadmeMetrics(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	r := bareRouter(t)
	fams := r.collect(nil)
	if len(fams) == 0 {
		t.Fatal("no metrics")
	}
	for _, f := range fams {
		if !strings.Contains(string(readme), "`"+f.Name+"`") {
			t.Errorf("README does not name %s (%s)", f.Name, f.Help)
		}
	}
}

// bareRouter is a router with a small pool and an engine of one worker and no
// interfaces: enough for the metrics and reload paths. Both close when t ends.
func bareRouter(t *testing.T) *router {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	r := &router{pool: pool, eng: dataplane.New(dataplane.Config{Pool: pool, Workers: 1})}
	t.Cleanup(func() { r.eng.Close() })
	return r
}
