#!/bin/sh
# Attack: drop a new binary and run it (a copy of busybox under /tmp: a path the
# image's baseline never executed; busybox runs it as an applet because its name
# starts with "busybox"). Expected: exec_drift.
sleep "${E2E_DELAY:-0}"
cp /bin/busybox /tmp/busybox-dropper
chmod 755 /tmp/busybox-dropper
/tmp/busybox-dropper true && echo "dropped binary ran"
