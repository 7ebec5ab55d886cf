package main

import (
	"strconv"

	"github.com/dpkit/dpkit/examples/vrouter/internal/dataplane"
	"github.com/dpkit/dpkit/examples/vrouter/internal/metrics"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
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
	qrx := metrics.Family{Name: "vrouter_queue_rx_packets_total", Help: "Packets received per interface queue, as the port counts them.", Type: "counter"}
	qtx := metrics.Family{Name: "vrouter_queue_tx_packets_total", Help: "Packets sent per interface queue, as the port counts them.", Type: "counter"}
	xdrops := metrics.Family{Name: "vrouter_xsk_drops_total",
		Help: "Frames the kernel dropped at an AF_XDP socket (XDP_STATISTICS): rx_ring_full (the RX ring had no room), rx_dropped (no fill-ring frame, or too long), rx_invalid_descs, tx_invalid_descs; per interface and reason.",
		Type: "counter"}
	wp := metrics.Family{Name: "vrouter_worker_packets_total", Help: "Packets each forwarding worker received.", Type: "counter"}
	wl := metrics.Family{Name: "vrouter_worker_loops_total", Help: "Poll loops each forwarding worker ran.", Type: "counter"}
	wi := metrics.Family{Name: "vrouter_worker_idle_loops_total", Help: "Poll loops that found nothing, per forwarding worker.", Type: "counter"}
	frag := metrics.Family{Name: "vrouter_fragmented_total", Help: "IPv4 packets without DF received per interface and fragmented to fit their tunnel.", Type: "counter"}
	icmp := metrics.Family{Name: "vrouter_icmp_errors_sent_total", Help: "ICMP errors (fragmentation needed, packet too big, time exceeded) sent out of the interface.", Type: "counter"}
	for _, in := range r.eng.Ifaces() {
		l := []string{"interface", in.Name}
		st := in.Stats()
		rxp.Samples = append(rxp.Samples, metrics.Sample{Labels: l, Value: float64(st.RxPackets)})
		rxb.Samples = append(rxb.Samples, metrics.Sample{Labels: l, Value: float64(st.RxBytes)})
		txp.Samples = append(txp.Samples, metrics.Sample{Labels: l, Value: float64(st.TxPackets)})
		txb.Samples = append(txb.Samples, metrics.Sample{Labels: l, Value: float64(st.TxBytes)})
		icmp.Samples = append(icmp.Samples, metrics.Sample{Labels: l, Value: float64(st.ICMPSent)})
		frag.Samples = append(frag.Samples, metrics.Sample{Labels: l, Value: float64(st.Fragmented)})
		for why := dataplane.Reason(0); why < dataplane.NumReasons; why++ {
			drops.Samples = append(drops.Samples, metrics.Sample{Labels: []string{"interface", in.Name, "reason", why.String()},
				Value: float64(st.Drops[why])})
		}
		var pd [pmd.NumDropReasons]uint64
		var xs xsk.Statistics
		hasXSK := false
		for q, p := range in.Queues {
			if x, ok := socketOf(p); ok {
				if st, err := x.Stats(); err == nil {
					hasXSK = true
					xs.RxRingFull += st.RxRingFull
					xs.RxDropped += st.RxDropped
					xs.RxInvalidDescs += st.RxInvalidDescs
					xs.TxInvalidDescs += st.TxInvalidDescs
				}
			}
			ps := p.Stats()
			for why := range pd {
				pd[why] += ps.Drops[why]
			}
			ql := []string{"interface", in.Name, "queue", strconv.Itoa(q)}
			qrx.Samples = append(qrx.Samples, metrics.Sample{Labels: ql, Value: float64(ps.RxPackets)})
			qtx.Samples = append(qtx.Samples, metrics.Sample{Labels: ql, Value: float64(ps.TxPackets)})
		}
		for why := pmd.DropReason(0); why < pmd.NumDropReasons; why++ {
			pdrops.Samples = append(pdrops.Samples, metrics.Sample{Labels: []string{"interface", in.Name, "reason", why.String()},
				Value: float64(pd[why])})
		}
		if hasXSK {
			for _, r := range []struct {
				why string
				n   uint64
			}{{"rx_ring_full", xs.RxRingFull}, {"rx_dropped", xs.RxDropped}, {"rx_invalid_descs", xs.RxInvalidDescs}, {"tx_invalid_descs", xs.TxInvalidDescs}} {
				xdrops.Samples = append(xdrops.Samples, metrics.Sample{Labels: []string{"interface", in.Name, "reason", r.why}, Value: float64(r.n)})
			}
		}
	}
	for i, w := range r.workers {
		ws := w.Stats()
		l := []string{"worker", strconv.Itoa(i)}
		wp.Samples = append(wp.Samples, metrics.Sample{Labels: l, Value: float64(ws.Packets)})
		wl.Samples = append(wl.Samples, metrics.Sample{Labels: l, Value: float64(ws.Loops)})
		wi.Samples = append(wi.Samples, metrics.Sample{Labels: l, Value: float64(ws.IdleLoops)})
	}
	pool := r.pool.Stats()
	poolF := metrics.Family{Name: "vrouter_pool_free_frames", Help: "Frames in the shared free list.", Type: "gauge",
		Samples: []metrics.Sample{{Value: float64(pool.Free)}}}
	exh := metrics.Family{Name: "vrouter_pool_exhausted_total", Help: "Frame requests the pool could not fill.", Type: "counter",
		Samples: []metrics.Sample{{Value: float64(pool.Exhausted)}}}
	return append(f, rxp, rxb, txp, txb, drops, pdrops, xdrops, qrx, qtx, icmp, frag, wp, wl, wi, poolF, exh)
}

// socketOf returns the AF_XDP socket behind a queue's port, looking through a
// capture wrapper.
func socketOf(p pmd.Port) (*xsk.Socket, bool) {
	if c, ok := p.(*pmd.CapturePort); ok {
		p = c.Port
	}
	x, ok := p.(*xsk.Port)
	if !ok {
		return nil, false
	}
	return x.Socket(), true
}
