#!/bin/sh
# Attack: clone a child into a new (UTS) namespace. Expected: ns_clone.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" clone-newns
