#!/bin/sh
# Attack: ptrace another process (busybox has no strace: the static helper starts
# a child and attaches to it). Expected: ptrace.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" ptrace
