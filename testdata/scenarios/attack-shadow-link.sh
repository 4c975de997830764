#!/bin/sh
# Attack: reach /etc/shadow under another name, a symlink and a hard link that a
# careless rule on the name would miss. Expected: sensitive_file.
sleep "${E2E_DELAY:-0}"
ln -s /etc/shadow /tmp/s && echo "symlinked"
ln /etc/shadow /tmp/h 2>/dev/null && echo "hard linked"
