#!/bin/sh
# Benign workload: a busy HTTP server with a client loop. busybox httpd serves a
# directory of small pages on 127.0.0.1:8080 and a client fetches them with wget,
# paced so every window sees about the same amount of work: one fetch every
# E2E_PACE seconds (0.1), E2E_FETCHES times (unset: forever). The loop runs the
# same commands either way (a shell builtin counts), so only the pace differs.
set -u
pace=${E2E_PACE:-0.1}
fetches=${E2E_FETCHES:-}
www=/tmp/www
mkdir -p "$www"
i=0
while [ "$i" -lt 10 ]; do
	printf '<html><body>page %s %s</body></html>\n' "$i" "$(hostname)" >"$www/p$i.html"
	i=$((i + 1))
done
httpd -f -p 127.0.0.1:8080 -h "$www" &
sleep 0.5
n=0
while [ -z "$fetches" ] || [ "$n" -lt "$fetches" ]; do
	wget -q -O /dev/null "http://127.0.0.1:8080/p$((n % 10)).html"
	n=$((n + 1))
	sleep "$pace"
done
