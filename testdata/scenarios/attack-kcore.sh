#!/bin/sh
# Attack: read kernel memory through /proc/kcore (Docker masks it with /dev/null;
# the open is what counts). Expected: sensitive_file.
sleep "${E2E_DELAY:-0}"
dd if=/proc/kcore of=/dev/null bs=64 count=1 2>/dev/null && echo "read /proc/kcore" || echo "/proc/kcore refused"
