#!/bin/sh
# Attack: raise a capability with capset (busybox cannot call capset with a raised
# effective set, so the static helper drops one capability and asks for it back).
# Expected: cap_raise.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" capraise
