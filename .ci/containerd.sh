#!/usr/bin/env bash
# Start (or stop) a containerd of the Kubernetes tests' own, beside Docker's, with
# its CRI plugin on: its own root, state and socket, the cgroupfs driver as a
# kubelet without systemd uses, no CNI (the tests' pods use the host network),
# and a sandbox ("pause") image built here and imported, as nothing can be
# pulled. The busybox test image is imported too (Docker must be up:
# .ci/dockerd.sh start builds it), and the agent's image from
# bin/cagewatch-image.tar when make image built it (always re-imported: it is
# the code under test).
#
#   .ci/containerd.sh [start]  install containerd if missing, start it, import images
#   .ci/containerd.sh stop     stop the containerd this script started
#
# Environment:
#   K8S_CONTAINERD_DIR  root of its files (default /tmp/cagewatch-containerd);
#                       the socket is $K8S_CONTAINERD_DIR/containerd.sock
set -euo pipefail

DIR=${K8S_CONTAINERD_DIR:-/tmp/cagewatch-containerd}
SOCK=$DIR/containerd.sock
PIDFILE=$DIR/containerd.pid
HERE=$(cd "$(dirname "$0")/.." && pwd)
PAUSE=cagewatch/pause:1
BUSYBOX=cagewatch/busybox:1

log() { echo "containerd.sh: $*" >&2; }

docker_cli() { if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
ctr_cli() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

install() {
	command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null && return 0
	log "installing containerd and runc"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q containerd runc >/tmp/containerd-apt.log 2>&1 ||
		{ apt-get update -q >>/tmp/containerd-apt.log 2>&1; apt-get install -y -q containerd runc >>/tmp/containerd-apt.log 2>&1; } ||
		{ tail -20 /tmp/containerd-apt.log >&2; log "apt-get install failed"; exit 1; }
}

up() { [[ -S $SOCK ]] && ctr --address "$SOCK" version >/dev/null 2>&1; }

start() {
	install
	if up; then
		log "containerd is already up at $SOCK"
	else
		mkdir -p "$DIR/root" "$DIR/state" "$DIR/cni/bin" "$DIR/cni/conf"
		cat >"$DIR/config.toml" <<CONF
version = 2
root = "$DIR/root"
state = "$DIR/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/$PAUSE"
  # Sandboxes ask for oom_score_adj -998, which takes CAP_SYS_RESOURCE; hosts
  # whose root lacks it (as these test machines) get containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$DIR/cni/bin"
    conf_dir = "$DIR/cni/conf"
CONF
		log "starting containerd (config $DIR/config.toml, log $DIR/containerd.log)"
		setsid containerd --config "$DIR/config.toml" </dev/null >>"$DIR/containerd.log" 2>&1 &
		echo $! >"$PIDFILE"
		local i
		for ((i = 0; i < 60; i++)); do
			up && break
			sleep 1
		done
		up || { tail -30 "$DIR/containerd.log" >&2; log "containerd did not come up"; exit 1; }
		log "containerd is up after ${i}s"
	fi
	import_images
}

import_images() {
	docker_cli info >/dev/null 2>&1 || { log "docker is not running (.ci/dockerd.sh start)"; exit 1; }
	if ! ctr_cli images ls -q | grep -qx "docker.io/$PAUSE"; then
		local work
		work=$(mktemp -d)
		mkdir -p "$work/rootfs"
		CGO_ENABLED=0 go build -o "$work/rootfs/pause" "$HERE/testdata/k8s/pause"
		tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
		docker_cli import -c 'ENTRYPOINT ["/pause"]' "$work/rootfs.tar" "$PAUSE" >/dev/null
		docker_cli save "$PAUSE" -o "$work/pause.tar"
		ctr_cli images import "$work/pause.tar" >/dev/null
		rm -rf "$work"
		log "imported docker.io/$PAUSE"
	fi
	if ! ctr_cli images ls -q | grep -qx "docker.io/$BUSYBOX"; then
		local tarball
		tarball=$(mktemp)
		docker_cli save "$BUSYBOX" -o "$tarball"
		ctr_cli images import "$tarball" >/dev/null
		rm -f "$tarball"
		log "imported docker.io/$BUSYBOX"
	fi
	if [[ -f $HERE/bin/cagewatch-image.tar ]]; then
		ctr_cli images import "$HERE/bin/cagewatch-image.tar" >/dev/null
		log "imported the agent image from bin/cagewatch-image.tar"
	fi
}

stop() {
	[[ -e $PIDFILE ]] || return 0
	local pid
	pid=$(cat "$PIDFILE")
	if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == containerd ]]; then
		kill "$pid"
		local i
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		log "containerd stopped"
	fi
	rm -f "$PIDFILE"
}

case ${1:-start} in
start) start ;;
stop) stop ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
