#!/bin/sh
# Attack: unshare namespaces (a new user namespace, then a new mount namespace),
# the first step of many escapes and privilege escalations. Expected: ns_unshare.
sleep "${E2E_DELAY:-0}"
unshare -U true && echo "unshare -U: ok" || echo "unshare -U: refused"
unshare -m true && echo "unshare -m: ok" || echo "unshare -m: refused"
