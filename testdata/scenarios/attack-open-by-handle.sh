#!/bin/sh
# Attack: open_by_handle_at, the "shocker" primitive for reading host files by
# handle (here only a file of the container's own root). Expected:
# kernel_attack_surface.
sleep "${E2E_DELAY:-0}"
"${E2E_HELPER:-/e2e-bin/e2ehelper}" open-by-handle
