package xsk

import "github.com/dpkit/dpkit/internal/afxdp"

func descOf(addr uint64, n, opt uint32) afxdp.Desc {
	return afxdp.Desc{Addr: addr, Len: n, Options: opt}
}
