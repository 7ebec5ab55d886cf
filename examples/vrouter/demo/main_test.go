package main

import (
	"slices"
	"testing"
)

// TestLeftoverNamespaces: the demo's namespaces are found in ip netns list's output,
// with or without an id, and no one else's (a test's vr..., another tool's).
func TestLeftoverNamespaces(t *testing.T) {
	list := "vrdemoa1b2c3-n1 (id: 0)\nvr0a1b2c-n1 (id: 1)\nvrdemoa1b2c3-k1\nrde1\n\n"
	got := leftoverNamespaces(list)
	if want := []string{"vrdemoa1b2c3-n1", "vrdemoa1b2c3-k1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
