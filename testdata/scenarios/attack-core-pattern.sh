#!/bin/sh
# Attack: point the kernel's core_pattern at a program (a classic escape). It must
# fail harmlessly: Docker mounts /proc/sys read-only even with --cap-add ALL, so
# the write is attempted only when /proc/sys is read-only; otherwise the file is
# opened for writing without writing anything. Expected: sensitive_file.
sleep "${E2E_DELAY:-0}"
if awk '$5 == "/proc/sys" && $6 ~ /^ro(,|$)/ { ro = 1 } END { exit !ro }' /proc/self/mountinfo; then
	echo '|/tmp/x' >/proc/sys/kernel/core_pattern && echo "core_pattern written?!" || echo "core_pattern write refused"
else
	echo "/proc/sys is writable here: opening core_pattern without writing"
	: >>/proc/sys/kernel/core_pattern
fi
