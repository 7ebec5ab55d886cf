#!/bin/bash
# mkimage.sh DIR — build the guest kernel and base initramfs for dpkit's VM tests.
#
# Fetches Debian's current amd64 kernel package with apt-get download (no install),
# unpacks the compressed kernel into a plain vmlinux (extract-vmlinux style: find the
# compression magic inside the bzImage and decompress from there; an uncompressed ELF
# boots in ~3 s under TCG instead of ~10 s), and packs a base initramfs: busybox
# (static), the virtio/vfio modules with a modules.dep from busybox depmod, and /init.
# The Go helper (vmtest.go) appends the test binary as a second cpio archive.
#
# Output in DIR: vmlinux, base.cpio, kernel.version. Idempotent: exits early when the
# outputs exist for the kernel that linux-image-amd64 currently depends on.
set -euo pipefail
dir=${1:?usage: mkimage.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

pkg=${DPKIT_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$pkg" ] || { echo "mkimage: cannot find the Debian kernel package (apt-cache depends linux-image-amd64)" >&2; exit 1; }
if [ -s "$dir/vmlinux" ] && [ -s "$dir/base.cpio" ] && [ "$(cat "$dir/kernel.pkg" 2>/dev/null)" = "$pkg" ] \
	&& [ "$dir/base.cpio" -nt "$here/mkimage.sh" ] && [ "$dir/base.cpio" -nt "$here/init.sh" ]; then
	exit 0
fi

work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
deb=$(ls "$dir"/"$pkg"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
	(cd "$work" && apt-get download "$pkg" >/dev/null)
	mv "$work"/"$pkg"_*.deb "$dir"/
	deb=$(ls "$dir"/"$pkg"_*.deb | head -1)
fi
dpkg-deb -x "$deb" "$work/x"
kver=$(ls "$work/x/lib/modules" | head -1)
bz="$work/x/boot/vmlinuz-$kver"

# extract-vmlinux: try each compressor's magic at each offset it occurs at; the first
# that decompresses to an ELF image is the kernel.
try() { # magic(grep -P) cmd...
	local magic=$1; shift
	local off
	for off in $(LC_ALL=C grep -obUaP "$magic" "$bz" | cut -d: -f1); do
		tail -c+$((off + 1)) "$bz" | "$@" >"$work/vmlinux" 2>/dev/null || true
		if [ "$(head -c4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			return 0
		fi
	done
	return 1
}
try '\xfd\x37\x7a\x58\x5a\x00' xz -dc ||
	try '\x28\xb5\x2f\xfd' zstd -dc ||
	try '\x1f\x8b\x08' gzip -dc ||
	{ echo "mkimage: no known compressed kernel inside $bz" >&2; exit 1; }
strip -o "$work/vmlinux.s" "$work/vmlinux" 2>/dev/null && mv "$work/vmlinux.s" "$work/vmlinux" || true

# Base initramfs.
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules/"$kver"}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
src="$work/x/lib/modules/$kver"
mods="drivers/virtio drivers/net/virtio_net.ko drivers/net/net_failover.ko net/core/failover.ko
 drivers/vfio virt/lib/irqbypass.ko drivers/net/tun.ko drivers/net/veth.ko net/packet"
for m in $mods; do
	[ -e "$src/kernel/$m" ] || continue
	mkdir -p "$root/lib/modules/$kver/kernel/$(dirname "$m")"
	cp -r "$src/kernel/$m" "$root/lib/modules/$kver/kernel/$(dirname "$m")/"
done
cp "$src"/modules.builtin "$src"/modules.order "$root/lib/modules/$kver/"
/bin/busybox depmod -b "$root" "$kver"
install -m 0755 "$here/init.sh" "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/base.cpio"

mv "$work/vmlinux" "$dir/vmlinux"
mv "$work/base.cpio" "$dir/base.cpio"
echo "$kver" >"$dir/kernel.version"
echo "$pkg" >"$dir/kernel.pkg"
