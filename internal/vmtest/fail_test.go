package vmtest

import (
	"flag"
	"testing"
)

var failOnPurpose = flag.Bool("dpkit.fail", false, "make TestGuestFailsOnPurpose fail (harness self-test)")

func TestGuestFailsOnPurpose(t *testing.T) {
	NeedGuest(t)
	if *failOnPurpose {
		t.Fatal("failing on purpose to check the harness reports guest failures")
	}
}
