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
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &router{pool: pool, eng: dataplane.New(dataplane.Config{Pool: pool, Workers: 1})}
	defer r.eng.Close()
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
