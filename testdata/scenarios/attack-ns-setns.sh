#!/bin/sh
# Attack: from a --pid=host container, enter a host process's namespaces (setns),
# i.e. get a shell on the host; the payload is `true`. The classic target is
# PID 1; E2E_TARGET_PID picks another host process where PID 1's namespaces are
# not reachable (on some sandboxed VMs even host root cannot open /proc/1/ns/*).
# Expected: ns_setns.
sleep "${E2E_DELAY:-0}"
pid=${E2E_TARGET_PID:-1}
nsenter -t "$pid" -m -u -i -n -p true && echo "nsenter into pid $pid: ok" || echo "nsenter into pid $pid: refused"
