package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/route"
)

// VRFID is the engine's id for the i-th VRF of the config (ids start at 1).
func VRFID(i int) uint32 { return uint32(i + 1) }

// Build turns a validated config into forwarding tables. ifaces maps each configured
// interface name to its engine index; uplinkMAC is the uplink's own MAC and uplinkMTU
// its MTU, the longest outer packet a tunnel sends (0: no limit; above 65535, as
// loopback's 65536, the IP length field's 65535 is the limit). A reload
// builds a new set and publishes it with one pointer swap, so a packet sees either
// the old tables or the new, never a mix, and prefixes that did not change keep
// forwarding throughout.
func Build(c *config.Config, ifaces map[string]int, uplinkMAC, routerMAC [6]byte, uplinkMTU int) (*Tables, error) {
	uplinkMTU = min(uplinkMTU, 0xffff)
	nVRF := len(c.VRFs)
	// The next hops added below: discard, receive, one per interface, one per
	// remote in each VRF, one per ECMP route (counted with the routes), and slack.
	maxNH := 16 + len(c.Interfaces) + nVRF*len(c.Remotes)
	for _, v := range c.VRFs {
		maxNH += len(v.Routes)
	}
	rt, err := route.New(route.Options{MaxVRFs: nVRF + 1, MaxNextHops: maxNH})
	if err != nil {
		return nil, err
	}
	t := &Tables{
		Routes:        rt,
		Tunnels:       make([]*encap.Tunnel, maxNH),
		VNIs:          map[uint32]uint32{},
		Labels:        map[uint32]uint32{},
		Responders:    map[uint32]*route.Responder{},
		UnknownToHost: c.Exception != nil && c.Exception.Unknown == "exception",
	}
	vrfOf := map[string]uint32{}
	for i, v := range c.VRFs {
		vrfOf[v.Name] = VRFID(i)
	}
	var b route.Batch
	add := func(nh route.NextHop) (route.NextHopID, error) { return rt.AddNextHop(nh) }
	discard, err := add(route.NextHop{Kind: route.KindDiscard})
	if err != nil {
		return nil, err
	}
	receive, err := add(route.NextHop{Kind: route.KindReceive})
	if err != nil {
		return nil, err
	}
	local := map[string]route.NextHopID{}
	for _, in := range c.Interfaces {
		id, err := add(route.NextHop{Kind: route.KindLocal, Port: uint32(ifaces[in.Name]), MAC: route.MAC(in.HW)})
		if err != nil {
			return nil, err
		}
		local[in.Name] = id
	}
	for i, v := range c.VRFs {
		vrf := VRFID(i)
		t.VNIs[v.VNI] = vrf
		t.Labels[v.Label] = vrf
		resp := &route.Responder{}
		t.Responders[vrf] = resp
		// One tunnel next hop per remote for this VRF.
		tunnel := map[string]route.NextHopID{}
		for _, r := range c.Remotes {
			o := encap.Options{SrcMAC: uplinkMAC, Src: c.Node.Addr, Dst: r.Addr, DSCP: -1, MTU: uplinkMTU}
			copy(o.DstMAC[:], r.HW)
			if len(c.Uplink.GwMAC) == 6 {
				copy(o.DstMAC[:], c.Uplink.GwMAC)
			}
			nh := route.NextHop{Kind: route.KindTunnel, Remote: r.Addr, Source: c.Node.Addr}
			switch r.Encap {
			case "vxlan":
				o.Type, o.VNI = encap.VXLAN, v.VNI
				nh.Encap, nh.Label = route.EncapVXLAN, v.VNI
			case "mplsoudp":
				o.Type, o.Labels = encap.MPLSoUDP, []encap.Label{{Label: v.Label}}
				nh.Encap, nh.Label = route.EncapMPLSoUDP, v.Label
			case "mplsogre":
				o.Type, o.Labels = encap.MPLSoGRE, []encap.Label{{Label: v.Label}}
				nh.Encap, nh.Label = route.EncapMPLSoGRE, v.Label
			}
			tun, err := encap.NewTunnel(o)
			if err != nil {
				return nil, fmt.Errorf("remote %s, VRF %s: %w", r.Name, v.Name, err)
			}
			id, err := add(nh)
			if err != nil {
				return nil, err
			}
			t.Tunnels[id] = tun
			if len(r.RtMAC) == 6 {
				if t.InnerMAC == nil {
					t.InnerMAC = map[route.NextHopID][6]byte{}
				}
				t.InnerMAC[id] = [6]byte(r.RtMAC)
			}
			tunnel[r.Name] = id
		}
		// The VRF's pods: their addresses route to them; their gateways go to the
		// host; the vRouter answers ARP/ND for both (it is every pod's next hop).
		for _, in := range c.Interfaces {
			if in.VRF != v.Name {
				continue
			}
			for _, a := range in.Addrs {
				b.Insert(vrf, netip.PrefixFrom(a, a.BitLen()), local[in.Name])
				if err := resp.Add(a, route.MAC(routerMAC)); err != nil {
					return nil, err
				}
			}
			for _, g := range in.Gateways {
				b.Insert(vrf, netip.PrefixFrom(g, g.BitLen()), receive)
				if err := resp.Add(g, route.MAC(routerMAC)); err != nil {
					return nil, err
				}
			}
		}
		for _, r := range v.Routes {
			var id route.NextHopID
			switch {
			case r.Remote != "":
				id = tunnel[r.Remote]
			case len(r.ECMP) > 0:
				nh := route.NextHop{Kind: route.KindECMP}
				for _, m := range r.ECMP {
					nh.Members = append(nh.Members, tunnel[m])
				}
				if id, err = add(nh); err != nil {
					return nil, err
				}
			case r.Interface != "":
				id = local[r.Interface]
			case r.Action == "discard":
				id = discard
			case r.Action == "exception":
				id = receive
			}
			b.Insert(vrf, r.P, id)
		}
	}
	if err := rt.Apply(&b); err != nil {
		return nil, err
	}
	return t, nil
}

// IP4 converts an address for the engine's source checks.
func IP4(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }
