#!/bin/sh
# Attack: use a bind-mounted Docker socket from inside the container (read-only
# API call: GET /version). Expected: runtime_socket.
sleep "${E2E_DELAY:-0}"
sock=${E2E_DOCKER_SOCK:-/var/run/docker.sock}
nc -f "$sock" </dev/null >/dev/null 2>&1 # busybox nc cannot speak to unix sockets, but opens the path
"${E2E_HELPER:-/e2e-bin/e2ehelper}" docker-sock "$sock"
