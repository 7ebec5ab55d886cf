// Package routebench generates Internet-like route sets for comparing
// dpkit's route package with gaissmai/bart and DPDK rte_lpm/rte_fib.
//
// The generator is deterministic for a seed. Distributions:
//
// IPv4 (default 1M prefixes), by prefix length in percent, after the CIDR
// report's shape of the global table plus vRouter host routes:
//
//	/8 0.001  /9-/12 0.05  /13 0.1  /14 0.3  /15 0.5  /16 1.4  /17 0.8
//	/18 1.3   /19 2.5      /20 4    /21 4.5  /22 9.5  /23 8.5  /24 60
//	/25-/31 1.5 (spread evenly)     /32 5
//
// Prefixes up to /24 are uniform over 1.0.0.0–223.255.255.255 minus
// 10/8, 127/8, 172.16/12 and 192.168/16. Longer prefixes (/25-/32) sit
// inside 8192 "pod subnet" /24s, as host routes of a vRouter do. No /0.
//
// IPv6 (default 200k prefixes), in percent:
//
//	/28 1  /29 3  /30-/31 0.5  /32 10  /33-/35 0.5  /36 4  /40 6  /44 8
//	/45 1  /46 2  /47 2  /48 55  /56 3  /64 3  /128 1
//
// All within 2000::/3. 30000 "allocations" (/32s) are drawn first; /33
// and longer prefixes lie inside an allocation (like PI/PA more-specifics),
// /56, /64 and /128 inside a /48 of an allocation. Shorter than /32 are
// uniform in 2000::/3.
//
// Lookup addresses are drawn by picking a prefix uniformly and a random
// address inside it, so every address matches some route.
package routebench
