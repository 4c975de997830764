#!/bin/sh
# Attack: fileless execution. The payload (a copy of the image's busybox) is
# written into a memfd and run from there, so nothing lands on the image's
# filesystem (Docker mounts /dev/shm noexec, so droppers use memfds).
# Expected: fileless_exec.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" memfd-exec /bin/busybox && echo "payload ran from a memfd"
