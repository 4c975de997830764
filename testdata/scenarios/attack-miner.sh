#!/bin/sh
# Attack: a crypto-miner-like burst, a tight loop of tiny syscalls far above any
# rate the image learned. Expected: syscall_anomaly (or syscall_novel).
sleep "${E2E_DELAY:-0}"
dd if=/dev/zero of=/dev/null bs=1 count="${E2E_BURST_COUNT:-3000000}" 2>/dev/null
echo "burst done"
