#!/bin/sh
# Benign workload: a mostly idle sidecar. It sleeps and now and then reads a
# small file, like a health checker or a config watcher, and keeps its state in
# /etc/sidecar/ (a write below /etc its baseline learns).
set -u
n=0
mkdir -p /etc/sidecar
while :; do
	sleep 0.5
	n=$((n + 1))
	if [ $((n % 2)) -eq 0 ]; then
		cat /etc/hostname >/dev/null
		echo "$n" >/etc/sidecar/state
	fi
done
