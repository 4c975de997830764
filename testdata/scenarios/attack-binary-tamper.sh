#!/bin/sh
# Attack: plant a binary in /usr/bin and try to overwrite the running shell
# (busybox, refused with ETXTBSY: the runc CVE-2019-5736 technique retries such
# a write-open until the program exits). Only the image's own busybox runs.
# Expected: binary_tamper.
sleep "${E2E_DELAY:-0}"
printf '#!/bin/sh\necho pwned\n' >/usr/bin/update-check && echo "planted /usr/bin/update-check"
( : >>/bin/busybox ) 2>/dev/null || echo "/bin/busybox busy, as expected"
