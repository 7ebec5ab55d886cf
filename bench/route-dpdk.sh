#!/bin/sh
# route-dpdk.sh: DPDK peer for the route benchmarks (issue 5).
#
# Generates the same route and lookup sets as bench/route (routegen, same
# seed and distribution) and runs Debian's dpdk-test-fib on them:
#   IPv4: rte_fib DIR24_8 (bulk lookups of 64)
#   IPv6: rte_fib6 TRIE (bulk lookups of 64)
#   IPv4 again with -c (RTE_LPM=1): rte_lpm on the same 1M routes
#     (rte_lpm_lookup_bulk, bursts of 64), checked against rte_fib's answers;
#     loading 1M routes into rte_lpm takes about 90 s here
# and, with LPM_AUTOTEST=1, dpdk-test's lpm_perf_autotest for rte_lpm itself.
# dpdk-test-fib prints TSC cycles per lookup ("AVG FIB lookup", "AVG LPM
# lookup"); this script converts them to ns with the TSC frequency.
# Hugepages are not required (--no-huge); Go's heap also uses 4 KiB pages.
# The tool deletes all routes after the lookups (very slow for rte_lpm: its
# deletion is quadratic); we stop it once the lookup figures are printed.
#
# Usage: bench/route-dpdk.sh [workdir]   (needs: dpdk, go)
set -eu
cd "$(dirname "$0")"
dir=${1:-$(mktemp -d)}
command -v dpdk-test-fib >/dev/null || { echo "dpdk-test-fib missing (apt-get install dpdk)"; exit 1; }
tsc_mhz=$(dmesg 2>/dev/null | awk '/tsc: Detected/ {for (i=1;i<=NF;i++) if ($i=="MHz") print $(i-1)}' | head -1)
[ -n "${tsc_mhz:-}" ] || tsc_mhz=$(awk -F: '/cpu MHz/ {print $2+0; exit}' /proc/cpuinfo)
echo "TSC ${tsc_mhz} MHz; files in $dir"
(cd route && go run ./cmd/routegen -routes "$dir/r4.txt" -lookups "$dir/l4.txt" &&
	go run ./cmd/routegen -6 -routes "$dir/r6.txt" -lookups "$dir/l6.txt")

run() { # name, args...
	name=$1; shift
	log="$dir/$name.log"
	: >"$log"
	stdbuf -oL dpdk-test-fib --no-huge -m 4096 -l 0 --no-pci --log-level=lib.eal:error -- "$@" >"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		if grep -q "AVG FIB delete\|FAIL\|fails\|Can not" "$log"; then kill "$pid"; break; fi
		sleep 2
	done
	wait "$pid" 2>/dev/null || true
	grep -E "AVG (FIB|LPM) lookup|same values|FAIL|fails|Can not" "$log" |
		awk -v n="$name" -v mhz="$tsc_mhz" '/AVG/ {printf "%s %s %s: %.1f cycles = %.2f ns/lookup\n", n, $2, $3, $4, $4*1000/mhz; next} {print n": "$0}'
}
run ipv4-rte_fib-1M -f "$dir/r4.txt" -t "$dir/l4.txt" -g 65536
run ipv6-rte_fib6-200k -6 -f "$dir/r6.txt" -t "$dir/l6.txt" -g 1048576
if [ -n "${RTE_LPM:-}" ]; then
	run ipv4-rte_fib-vs-rte_lpm-1M -f "$dir/r4.txt" -t "$dir/l4.txt" -c -g 65536
fi
if [ -n "${LPM_AUTOTEST:-}" ]; then
	# slow: its 1M-route load hits the same quadratic rte_lpm insertion
	echo "rte_lpm (dpdk-test lpm_perf_autotest, its own route table, random addresses):"
	echo lpm_perf_autotest | timeout 1800 dpdk-test --no-huge -m 2048 -l 0 --no-pci --log-level=lib.eal:error 2>&1 |
		grep -iE "lookup|cycles|routes|Average" | head -20
fi
