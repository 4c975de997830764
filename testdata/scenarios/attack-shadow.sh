#!/bin/sh
# Attack: read password hashes from /etc/shadow. Expected: sensitive_file.
sleep "${E2E_DELAY:-0}"
cat /etc/shadow >/dev/null 2>&1 && echo "read /etc/shadow" || echo "/etc/shadow: absent or refused"
