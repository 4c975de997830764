#!/bin/sh
# Attack stand-in for the model: the http image's own busybox at about its
# learned pace, walking the filesystem instead of serving pages, so only the
# syscall mix and order differ. Expected: syscall_anomaly (or syscall_novel).
sleep "${E2E_DELAY:-0}"
end=$(($(date +%s) + ${E2E_DURATION:-6}))
while [ "$(date +%s)" -lt "$end" ]; do
	ls -laR /etc /usr/share >/dev/null 2>&1
	sleep 0.1
done
echo "walk done"
