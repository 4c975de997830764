#!/usr/bin/env bash
# Start (or stop) a Docker daemon by hand on a machine without systemd, and make
# sure the local test image cagewatch/busybox:1 exists (built from busybox-static,
# no registry needed).
#
#   .ci/dockerd.sh [start]   install docker.io + busybox-static if missing, start
#                            dockerd if `docker info` fails, wait for it, build image
#   .ci/dockerd.sh stop      stop the dockerd that this script started
#   .ci/dockerd.sh status    exit 0 if `docker info` works
#
# Environment:
#   DOCKERD_LOG      dockerd log file              (default /tmp/dockerd.log)
#   DOCKERD_PIDFILE  pid file of our dockerd       (default /tmp/dockerd.pid)
#   DOCKERD_WAIT     seconds to wait for the daemon (default 60)
#   DOCKERD_ARGS     extra dockerd flags, e.g. "--iptables=false"
#   CAGEWATCH_IMAGE  image to build                (default cagewatch/busybox:1)
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/tmp/dockerd.pid}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
DOCKERD_ARGS=${DOCKERD_ARGS:-}
IMAGE=${CAGEWATCH_IMAGE:-cagewatch/busybox:1}

log() { echo "dockerd.sh: $*" >&2; }

# Prefer the Debian client (same version as the daemon); a newer client in
# /usr/local/bin also works (it negotiates the API down), but keep it predictable.
docker_cli() {
	if [[ -x /usr/bin/docker ]]; then
		/usr/bin/docker "$@"
	else
		docker "$@"
	fi
}

docker_ok() { timeout 15 bash -c 'if [[ -x /usr/bin/docker ]]; then exec /usr/bin/docker info; else exec docker info; fi' >/dev/null 2>&1; }

# pid_is PID COMM: true if PID is alive and its comm is COMM.
pid_is() {
	local pid=$1 comm=$2
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/comm ]] || return 1
	[[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

install_packages() {
	local missing=()
	pkg_installed docker.io || missing+=(docker.io)
	pkg_installed busybox-static || missing+=(busybox-static)
	[[ ${#missing[@]} -eq 0 ]] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "${missing[@]}" >/tmp/dockerd-apt.log 2>&1; then
		apt-get update -q >>/tmp/dockerd-apt.log 2>&1 || true
		apt-get install -y -q "${missing[@]}" >>/tmp/dockerd-apt.log 2>&1 || {
			tail -20 /tmp/dockerd-apt.log >&2
			log "apt-get install failed"
			return 1
		}
	fi
}

# /run is on disk here, so pid files of a daemon killed by a reboot or by the
# end of a session survive; dockerd/containerd refuse or misbehave if that pid
# now belongs to another process.
clear_stale_pidfiles() {
	local f pid
	for f in /var/run/docker.pid:dockerd /var/run/docker/containerd/containerd.pid:containerd "$DOCKERD_PIDFILE:dockerd"; do
		local file=${f%:*} comm=${f##*:}
		[[ -e "$file" ]] || continue
		pid=$(cat "$file" 2>/dev/null || true)
		if ! pid_is "$pid" "$comm"; then
			rm -f "$file"
		fi
	done
}

start_dockerd() {
	if docker_ok; then
		log "docker is already up"
		return 0
	fi
	clear_stale_pidfiles
	local pid=""
	if [[ -e /var/run/docker.pid ]] && pid_is "$(cat /var/run/docker.pid)" dockerd; then
		pid=$(cat /var/run/docker.pid)
		log "a dockerd (pid $pid) is already running; waiting for it"
	elif [[ -e "$DOCKERD_PIDFILE" ]]; then
		pid=$(cat "$DOCKERD_PIDFILE")
		log "our dockerd (pid $pid) is already running; waiting for it"
	else
		log "starting dockerd (log: $DOCKERD_LOG, pid file: $DOCKERD_PIDFILE)"
		mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PIDFILE")"
		# setsid: own session, so it outlives the caller's process group.
		# shellcheck disable=SC2086
		setsid /usr/sbin/dockerd $DOCKERD_ARGS \
			</dev/null >>"$DOCKERD_LOG" 2>&1 &
		pid=$!
		echo "$pid" >"$DOCKERD_PIDFILE.tmp"
		mv -f "$DOCKERD_PIDFILE.tmp" "$DOCKERD_PIDFILE"
	fi
	local i
	for ((i = 0; i < DOCKERD_WAIT; i++)); do
		if docker_ok; then
			# setsid normally execs in place, so $! is dockerd; if it forked
			# instead, take the pid that dockerd wrote itself.
			if ! pid_is "$pid" dockerd && pid_is "$(cat /var/run/docker.pid 2>/dev/null)" dockerd; then
				pid=$(cat /var/run/docker.pid)
				echo "$pid" >"$DOCKERD_PIDFILE"
			fi
			log "docker is up after ${i}s (dockerd pid $pid)"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null && pid_is "$(cat /var/run/docker.pid 2>/dev/null)" dockerd; then
			pid=$(cat /var/run/docker.pid)
			echo "$pid" >"$DOCKERD_PIDFILE"
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "dockerd (pid $pid) exited; last log lines:"
			tail -20 "$DOCKERD_LOG" >&2 || true
			rm -f "$DOCKERD_PIDFILE"
			return 1
		fi
		sleep 1
	done
	log "docker info still failing after ${DOCKERD_WAIT}s; last log lines:"
	tail -20 "$DOCKERD_LOG" >&2 || true
	return 1
}

build_image() {
	if docker_cli image inspect "$IMAGE" >/dev/null 2>&1; then
		return 0
	fi
	log "building $IMAGE from /bin/busybox (busybox-static)"
	local tmp
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	mkdir -p "$tmp"/rootfs/{bin,dev,etc,proc,root,sys,tmp}
	chmod 1777 "$tmp/rootfs/tmp"
	cp /bin/busybox "$tmp/rootfs/bin/busybox"
	# Run --install inside a chroot: run from the host path it would make the
	# symlinks point at $tmp/rootfs/bin/busybox, which is broken in the container.
	chroot "$tmp/rootfs" /bin/busybox --install -s /bin
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
	tar --numeric-owner -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
	docker_cli import -c 'CMD ["/bin/sh"]' "$tmp/rootfs.tar" "$IMAGE" >/dev/null
	docker_cli image inspect "$IMAGE" >/dev/null
	log "built $IMAGE"
}

stop_dockerd() {
	if [[ ! -e "$DOCKERD_PIDFILE" ]]; then
		log "no pid file $DOCKERD_PIDFILE: no dockerd started by this script"
		return 0
	fi
	local pid
	pid=$(cat "$DOCKERD_PIDFILE")
	if ! pid_is "$pid" dockerd; then
		log "pid $pid from $DOCKERD_PIDFILE is not a running dockerd; removing stale pid file"
		rm -f "$DOCKERD_PIDFILE"
		return 0
	fi
	log "stopping dockerd (pid $pid)"
	kill -TERM "$pid"
	local i
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "dockerd (pid $pid) still alive after 60s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 1
	fi
	rm -f "$DOCKERD_PIDFILE"
	log "dockerd stopped"
}

main() {
	[[ $(id -u) -eq 0 ]] || { log "must run as root"; exit 1; }
	case "${1:-start}" in
	start)
		install_packages
		start_dockerd
		build_image
		;;
	stop)
		stop_dockerd
		;;
	status)
		docker_ok
		;;
	*)
		echo "usage: $0 [start|stop|status]" >&2
		exit 2
		;;
	esac
}

main "$@"
