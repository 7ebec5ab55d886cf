package main

import (
	"github.com/dpkit/dpkit/examples/vrouter/internal/dataplane"
	"github.com/dpkit/dpkit/examples/vrouter/internal/metrics"
	"github.com/dpkit/dpkit/pmd"
)

// collect turns the engine's and the ports' counters into metric families at scrape
// time.
func (r *router) collect(f []metrics.Family) []metrics.Family {
	rxp := metrics.Family{Name: "vrouter_rx_packets_total", Help: "Packets received per interface.", Type: "counter"}
	rxb := metrics.Family{Name: "vrouter_rx_bytes_total", Help: "Bytes received per interface.", Type: "counter"}
	txp := metrics.Family{Name: "vrouter_tx_packets_total", Help: "Packets sent per interface.", Type: "counter"}
	txb := metrics.Family{Name: "vrouter_tx_bytes_total", Help: "Bytes sent per interface.", Type: "counter"}
	drops := metrics.Family{Name: "vrouter_drops_total", Help: "Packets dropped by the forwarding engine, per interface and reason.", Type: "counter"}
	pdrops := metrics.Family{Name: "vrouter_port_drops_total", Help: "Packets dropped by the port itself (driver level), per reason.", Type: "counter"}
	icmp := metrics.Family{Name: "vrouter_icmp_errors_sent_total", Help: "ICMP fragmentation-needed and ICMPv6 packet-too-big messages sent out of the interface.", Type: "counter"}
	for _, in := range r.eng.Ifaces() {
		l := []string{"interface", in.Name}
		rxp.Samples = append(rxp.Samples, metrics.Sample{Labels: l, Value: float64(in.Stats.RxPackets.Load())})
		rxb.Samples = append(rxb.Samples, metrics.Sample{Labels: l, Value: float64(in.Stats.RxBytes.Load())})
		txp.Samples = append(txp.Samples, metrics.Sample{Labels: l, Value: float64(in.Stats.TxPackets.Load())})
		txb.Samples = append(txb.Samples, metrics.Sample{Labels: l, Value: float64(in.Stats.TxBytes.Load())})
		icmp.Samples = append(icmp.Samples, metrics.Sample{Labels: l, Value: float64(in.Stats.ICMPSent.Load())})
		for why := dataplane.Reason(0); why < dataplane.NumReasons; why++ {
			drops.Samples = append(drops.Samples, metrics.Sample{Labels: []string{"interface", in.Name, "reason", why.String()},
				Value: float64(in.Stats.Drops[why].Load())})
		}
		ps := in.Port.Stats()
		for why := pmd.DropReason(0); why < pmd.NumDropReasons; why++ {
			pdrops.Samples = append(pdrops.Samples, metrics.Sample{Labels: []string{"interface", in.Name, "reason", why.String()},
				Value: float64(ps.Drops[why])})
		}
	}
	pool := r.pool.Stats()
	poolF := metrics.Family{Name: "vrouter_pool_free_frames", Help: "Frames in the shared free list.", Type: "gauge",
		Samples: []metrics.Sample{{Value: float64(pool.Free)}}}
	exh := metrics.Family{Name: "vrouter_pool_exhausted_total", Help: "Frame requests the pool could not fill.", Type: "counter",
		Samples: []metrics.Sample{{Value: float64(pool.Exhausted)}}}
	return append(f, rxp, rxb, txp, txb, drops, pdrops, icmp, poolF, exh)
}
