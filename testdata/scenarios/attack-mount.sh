#!/bin/sh
# Attack: mount procfs and try to mount the host's disk (read-only; the device
# node is not in the container, so the kernel refuses). Expected: mount.
sleep "${E2E_DELAY:-0}"
mkdir -p /mnt/proc /mnt/disk
if mount -t proc proc /mnt/proc; then
	echo "mounted procfs"
	umount /mnt/proc
fi
disk=/dev/$(ls /sys/block 2>/dev/null | grep -E '^(vd|sd|xvd|nvme)' | head -n 1)
mount -o ro "${disk:-/dev/vda}" /mnt/disk && { echo "mounted $disk"; umount /mnt/disk; } || echo "mount $disk: refused"
