#!/usr/bin/env bash
# Installs what dpkit's tests, benchmarks and demo need on a Debian 12 machine, as root.
# Idempotent: it installs only what is missing and never shrinks the hugepage pool.
set -euo pipefail

# Debian packages, one reason each.
pkgs=(
  iproute2        # ip netns, veth, vxlan devices in tests
  iputils-ping    # kernel-stack traffic in namespace tests
  ethtool         # turning veth offloads off
  tshark          # independent dissector for frames dpkit builds
  tcpdump
  iperf3          # demo and vrouter benchmarks
  curl            # the vRouter's metrics and capture endpoint in end-to-end tests
  util-linux      # taskset in the AF_XDP benchmarks
  coreutils       # stdbuf around dpdk-testpmd
  dpdk            # dpdk-testpmd, dpdk-test, dpdk-test-fib: interop and peer benchmarks
  dpdk-dev
  qemu-system-x86 # VM tests (VFIO in a TCG guest, vhost-user guest)
  busybox-static  # initramfs of the VM tests
  cpio
  zstd            # unpacking the guest kernel of the VM tests
  xz-utils
  xdp-tools       # xdpdump / xdp-loader cross-checks
  libxdp-dev      # the C reference of the AF_XDP benchmarks
  libbpf-dev
  gcc
  make
  pkg-config
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go tools at pinned versions, into .cache/bin.
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
install_tool() { # name module@version
  [ -x "$bin/$1" ] && return 0
  echo "deps: go install $2"
  GOBIN="$bin" GOFLAGS=-buildvcs=false go install "$2"
}
install_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
install_tool benchstat golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

# Hugepages: make sure some 2 MiB pages exist for the hugepage paths of the tests,
# raising the pool if it is small and never lowering it (other processes share it).
want=512
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages # not vm.nr_hugepages: the default size may be 1 GiB
if [ -w "$hp" ]; then
  have=$(cat "$hp")
  if [ "$have" -lt "$want" ]; then
    echo "$want" > "$hp" || true
  fi
fi
exit 0
