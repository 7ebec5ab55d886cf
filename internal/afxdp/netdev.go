package afxdp

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Netdev generic netlink family (include/uapi/linux/netdev.h, kernel 6.6+ for the
// zero-copy segment limit); x/sys does not define these.
const (
	netdevFamily         = "netdev"
	netdevVersion        = 1
	netdevCmdDevGet      = 1
	netdevAttrIfindex    = 1
	netdevAttrZCMaxSegs  = 4
	defaultSkbFragsLimit = 17 // MAX_SKB_FRAGS with the default CONFIG_MAX_SKB_FRAGS
)

// CopyMaxSegs is how many descriptors one packet may span on a copy-mode socket.
// xsk_build_skb (net/xdp/xsk.c) refuses a chain past MAX_SKB_FRAGS fragments,
// counting it in tx_invalid_descs. Most devices get the first descriptor copied into
// the skb's linear part and each further one as a fragment, so MAX_SKB_FRAGS+1 would
// go; but a device flagged IFF_TX_SKB_NO_LINEAR (virtio_net) gets every descriptor,
// the first too, as a fragment of the UMEM's pages, so only MAX_SKB_FRAGS go, and
// userspace cannot read the flag. MAX_SKB_FRAGS is a kernel build option (17 by
// default, up to 45); the default is assumed, which errs on the safe side for larger
// builds.
const CopyMaxSegs = defaultSkbFragsLimit

// ZeroCopyMaxSegs reads how many descriptors one packet may span on a zero-copy socket
// of device ifindex (the driver's xdp_zc_max_segs, NETDEV_A_DEV_XDP_ZC_MAX_SEGS of the
// netdev family's dev-get), in the calling thread's network namespace. ok is false when
// the kernel or the device does not report it.
func ZeroCopyMaxSegs(ifindex int) (segs uint32, ok bool, err error) {
	fam, err := netlink.GenlFamilyGet(netdevFamily)
	if err != nil {
		return 0, false, fmt.Errorf("afxdp: netdev genetlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), 0)
	req.AddData(genlHeader{cmd: netdevCmdDevGet, version: netdevVersion})
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(ifindex))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, false, fmt.Errorf("afxdp: netdev dev-get ifindex %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return 0, false, fmt.Errorf("afxdp: netdev dev-get reply: %w", err)
		}
		for _, a := range attrs {
			// A u32 in host order; anything else is not what this kernel ABI says.
			if a.Attr.Type == netdevAttrZCMaxSegs && len(a.Value) == 4 {
				return binary.NativeEndian.Uint32(a.Value), true, nil
			}
		}
	}
	return 0, false, nil
}

// genlHeader is struct genlmsghdr. nl.Genlmsg serialises 4 bytes out of its 2-byte
// struct, so its reserved field is whatever memory follows, and the netdev family
// (strictly validated) refuses a non-zero one with EINVAL.
type genlHeader struct{ cmd, version uint8 }

func (h genlHeader) Len() int { return nl.SizeofGenlmsg }

func (h genlHeader) Serialize() []byte { return []byte{h.cmd, h.version, 0, 0} }
