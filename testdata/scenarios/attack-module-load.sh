#!/bin/sh
# Attack: load a kernel module. The "module" is random bytes, which the kernel
# rejects (not an ELF object), so nothing is loaded. Expected: kernel_module.
sleep "${E2E_DELAY:-0}"
dd if=/dev/urandom of=/tmp/x.ko bs=1024 count=4 2>/dev/null
insmod /tmp/x.ko && echo "insmod: loaded?!" || echo "insmod: refused"
