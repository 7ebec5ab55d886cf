package xsk

import (
	"testing"

	"github.com/dpkit/dpkit/internal/afxdp"
	"github.com/dpkit/dpkit/internal/testenv"
)

func afxdpProbe() (int, error) { return afxdp.Socket() }
func closeFd(fd int)           { afxdp.Close(fd) }

func testenvUnavailable(t *testing.T, why string) { testenv.Unavailable(t, why) }
