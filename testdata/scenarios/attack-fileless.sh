#!/bin/sh
# Attack: run a payload from /dev/shm, the memory-backed directory droppers use
# to leave nothing on the image's filesystem (busybox runs a copy of itself as
# an applet because its name starts with "busybox"). Expected: fileless_exec.
sleep "${E2E_DELAY:-0}"
cp /bin/busybox /dev/shm/busybox-payload
/dev/shm/busybox-payload true && echo "payload ran from /dev/shm"
