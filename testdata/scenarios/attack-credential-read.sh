#!/bin/sh
# Attack: look for ssh keys, cloud credentials and a service-account token
# (absent here: the attempt is what counts). Expected: credential_read.
sleep "${E2E_DELAY:-0}"
for f in /root/.ssh/id_rsa /root/.aws/credentials /var/run/secrets/kubernetes.io/serviceaccount/token; do
	cat "$f" >/dev/null 2>&1 && echo "read $f" || echo "$f: absent"
done
