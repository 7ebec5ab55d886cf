#!/bin/sh
# Builds the C reference: sh build.sh OUT. Needs gcc, libxdp-dev, libbpf-dev.
set -eu
here=$(dirname "$0")
gcc -O2 -Wall -Wextra -o "$1" "$here/xskref.c" -lxdp -lbpf
