#!/bin/sh
# Benign workload: a mostly idle sidecar. It sleeps and now and then reads a
# small file, like a health checker or a config watcher.
set -u
n=0
while :; do
	sleep 0.5
	n=$((n + 1))
	if [ $((n % 2)) -eq 0 ]; then
		cat /etc/hostname >/dev/null
	fi
done
