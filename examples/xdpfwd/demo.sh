#!/bin/sh
# Two-port forwarding demo: ns1 --veth-- [xdpfwd in nsf] --veth-- ns2, then ping
# across. Run as root from the repository root: sh examples/xdpfwd/demo.sh
set -eu
PATH="$PWD/.cache/go/bin:$PATH" # the Go scripts/deps.sh installs when the system has none
p=xdpfwd$$
cleanup() { ip netns del ${p}1 2>/dev/null || true; ip netns del ${p}f 2>/dev/null || true; ip netns del ${p}2 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for n in 1 f 2; do ip netns add $p$n; ip -n $p$n link set lo up; done
ip link add ${p}x1 numtxqueues 2 numrxqueues 2 netns ${p}1 type veth peer ${p}x2 numtxqueues 2 numrxqueues 2 netns ${p}f
ip link add ${p}y1 numtxqueues 2 numrxqueues 2 netns ${p}2 type veth peer ${p}y2 numtxqueues 2 numrxqueues 2 netns ${p}f
ip -n ${p}1 addr add 10.88.0.1/24 dev ${p}x1
ip -n ${p}2 addr add 10.88.0.2/24 dev ${p}y1
for l in "1 ${p}x1" "f ${p}x2" "f ${p}y2" "2 ${p}y1"; do set -- $l; ip -n $p$1 link set $2 up; done
# veth runs native XDP for kernel-made skbs (ARP) only with TSO off on the sender.
ip netns exec ${p}1 ethtool -K ${p}x1 tx off tso off gso off >/dev/null
ip netns exec ${p}2 ethtool -K ${p}y1 tx off tso off gso off >/dev/null
go build -o /tmp/$p ./examples/xdpfwd
ip netns exec ${p}f /tmp/$p -a ${p}x2 -b ${p}y2 -duration 6s &
fwd=$!
sleep 1
ip netns exec ${p}1 ping -c 4 -i 0.5 10.88.0.2
wait $fwd
rm -f /tmp/$p
