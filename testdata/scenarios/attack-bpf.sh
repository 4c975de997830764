#!/bin/sh
# Attack: call bpf(2) from a container (the kernel refuses the empty request).
# Expected: bpf_syscall.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" bpf
