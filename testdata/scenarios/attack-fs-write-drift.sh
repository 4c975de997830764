#!/bin/sh
# Attack: persistence through /etc, in the sidecar image that learned to write
# /etc/sidecar/ only: a root account appended to /etc/passwd and a cron entry.
# Expected: fs_write_drift.
sleep "${E2E_DELAY:-0}"
echo 'toor:x:0:0::/root:/bin/sh' >>/etc/passwd && echo "account added"
mkdir -p /etc/cron.d && echo '* * * * * root /tmp/x' >/etc/cron.d/job && echo "cron job planted"
