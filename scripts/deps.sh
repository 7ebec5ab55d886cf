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
  curl            # the vRouter's metrics and capture endpoint in end-to-end tests; Go below
  ca-certificates # https for curl and for the Go module proxy
  unzip           # the Go toolchain below
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

root=$(cd "$(dirname "$0")/.." && pwd)

# Go itself: Debian 12 ships Go 1.19 at most, older than go.mod asks for. When the go on
# PATH is missing or older, the release below goes into .cache/go (the Makefile puts
# .cache/go/bin first on PATH). It comes from the Go module proxy, as the toolchain
# module the go command itself downloads for GOTOOLCHAIN (go.dev/dl may be out of
# reach where the proxy is not). The SHA-256 is the zip's as fetched from
# proxy.golang.org; its bin/go and compiler are byte for byte those of the go1.26.8
# linux-amd64 release.
go_version=1.26.8
go_zip_sha256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
go_proxy=${GOPROXY:-https://proxy.golang.org}
go_proxy=${go_proxy%%[,|]*}
case "$go_proxy" in off|direct|"") go_proxy=https://proxy.golang.org ;; esac
export PATH="$root/.cache/go/bin:$PATH"
go_need=$(awk '$1 == "go" {print $2; exit}' "$root/go.mod")
go_have=$(cd "$root" && GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
go_have=${go_have#go}
if [ -z "$go_have" ] || [ "$(printf '%s\n%s\n' "$go_need" "$go_have" | sort -V | head -1)" != "$go_need" ]; then
  echo "deps: installing Go $go_version into .cache/go (go on PATH: ${go_have:-none}, go.mod needs $go_need)"
  mod="golang.org/toolchain@v0.0.1-go$go_version.linux-amd64"
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/go.zip" "$go_proxy/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-amd64.zip"
  echo "$go_zip_sha256  $tmp/go.zip" | sha256sum -c --quiet
  unzip -q "$tmp/go.zip" -d "$tmp"
  rm -rf "$root/.cache/go"
  mkdir -p "$root/.cache"
  mv "$tmp/$mod" "$root/.cache/go"
  rm -rf "$tmp"
fi

# Go tools at pinned versions, into .cache/bin.
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
