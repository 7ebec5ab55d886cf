// Package dataplane is the vRouter's forwarding engine: it polls the uplink and the
// pods' ports, checks pods' sources, answers ARP/ND for their gateway and (as a
// proxy) for what their VRF routes elsewhere, looks routes up per VRF, encapsulates
// towards remote nodes and decapsulates what they send. Its workers share the
// interfaces' queues, one owner per queue, and hand packets for a queue they do not
// own to its owner over single-producer rings.
package dataplane
