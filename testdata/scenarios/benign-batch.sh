#!/bin/sh
# Benign workload: a file-churning batch job. Each round creates, writes, reads
# and deletes a few files under /tmp, then pauses briefly (many short rounds per
# window keep the per-window rates steady).
set -u
dir=/tmp/batch
mkdir -p "$dir"
while :; do
	for i in 1 2 3; do
		dd if=/dev/urandom of="$dir/f$i" bs=1024 count=8 2>/dev/null
	done
	cat "$dir"/f* | md5sum >"$dir/sum"
	ls -l "$dir" >/dev/null
	rm -f "$dir"/f*
	sleep 0.1
done
