#!/usr/bin/env bash
# Regenerates the SBOM fixtures of profiler/inventory's tests with the pinned
# syft (hack/syft.sh). Root, Docker running (.ci/dockerd.sh start), Debian host.
# See README.md for what each file is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
syft=$("$repo/hack/syft.sh")
export SYFT_CHECK_FOR_APP_UPDATE=false

# cagewatch/busybox:1 (busybox-static's /bin/busybox alone, no package database):
# syft's binary classifier finds busybox.
# The same image in the formats ParseSBOM refuses, for its error tests.
"$syft" scan -q docker:cagewatch/busybox:1 \
	-o spdx-json="$here/busybox.spdx.json" -o spdx-json@2.2="$here/busybox.spdx22.json" \
	-o cyclonedx-json="$here/busybox.cdx.json" -o spdx-tag-value="$here/busybox.spdx" \
	-o syft-json="$here/busybox.syft.json"

# cagewatch-sbom/debian-mini:1: a Debian rootfs with a real dpkg database, made
# from this host's installed packages (their files, status stanzas, .list and
# .md5sums files), with the merged-/usr symlinks of Debian 12.
pkgs=(base-files gzip zlib1g libzstd1 libc6)
root=$(mktemp -d)
trap 'rm -rf "$root" "$root.tar" "$root.spdx.json"' EXIT
for d in bin sbin lib lib64; do
	mkdir -p "$root/usr/$d"
	ln -s "usr/$d" "$root/$d"
done
mkdir -p "$root/var/lib/dpkg/info"
: >"$root/var/lib/dpkg/status"
for p in "${pkgs[@]}"; do
	name=$(dpkg-query -W -f='${binary:Package}' "$p")
	dpkg-query -s "$p" >>"$root/var/lib/dpkg/status"
	echo >>"$root/var/lib/dpkg/status"
	cp "/var/lib/dpkg/info/$name.list" "$root/var/lib/dpkg/info/"
	[[ -e /var/lib/dpkg/info/$name.md5sums ]] && cp "/var/lib/dpkg/info/$name.md5sums" "$root/var/lib/dpkg/info/"
	# The package's files and symlinks (directories come with them); the root
	# symlinks above stay, so /bin/gzip lands in usr/bin as on the host.
	while IFS= read -r f; do
		[[ -d $f && ! -L $f ]] && continue
		mkdir -p "$root$(dirname "$f")"
		cp -a "$f" "$root$f"
	done <"/var/lib/dpkg/info/$name.list"
done
ln -sf ../usr/lib/os-release "$root/etc/os-release"
tar -C "$root" -cf "$root.tar" .
docker import "$root.tar" cagewatch-sbom/debian-mini:1 >/dev/null
"$syft" scan -q docker:cagewatch-sbom/debian-mini:1 -o spdx-json="$root.spdx.json"
# Most of libc6's files are iconv modules: keep three.
python3 "$here/trim.py" "$root.spdx.json" "$here/debian-mini.spdx.json"
