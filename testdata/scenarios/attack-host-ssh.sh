#!/bin/sh
# Attack: connect to the host's SSH port through the bridge gateway.
# Expected: host_port_connect.
sleep "${E2E_DELAY:-0}"
gw=$(ip route 2>/dev/null | awk '/^default/ { print $3; exit }')
gw=${gw:-172.17.0.1}
nc -w 2 "$gw" 22 </dev/null >/dev/null 2>&1 && echo "connected to $gw:22" || echo "connect to $gw:22 refused"
