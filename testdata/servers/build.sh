#!/usr/bin/env bash
# Builds the real-server images of TestServers (make servers) from this host's
# Debian packages, with no registry: for each server a minimal rootfs (the
# server binary, the shared libraries ldd names, its config and data, the few
# /etc files it reads, busybox for a shell) is assembled and `docker import`ed.
#
#   cagewatch-e2e/nginx:1     nginx serving a static page on :80
#   cagewatch-e2e/redis:1     redis-server on :6379, no auth, snapshots on
#   cagewatch-e2e/postgres:1  postgres on :5432, trust auth, initdb and the
#                             pgbench tables (scale 1) made at build time
#   cagewatch-e2e/mariadb:1   mariadbd on :3306, root without a password from
#                             anywhere, a bench.kv table made at build time
#                             (InnoDB uses io_uring: io_uring_setup at start)
#
# The host keeps the clients the test drives them with: ab (apache2-utils),
# redis-benchmark (redis-tools), pgbench (postgresql) and mariadb
# (mariadb-client). Missing packages are
# installed with apt-get (their services are not started here: the test starts
# the servers in containers only).
#
# Idempotent and cached: each image carries the label cagewatch.build, a hash
# of this script and of the package versions it copies from; an image whose
# label matches is not built again, so a second run takes seconds.
# Root; Docker must be running (.ci/dockerd.sh start).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/build.sh
PACKAGES=(nginx redis-server redis-tools postgresql apache2-utils busybox-static mariadb-server-core mariadb-client)
PREFIX=${CAGEWATCH_SERVERS_PREFIX:-cagewatch-e2e}

log() { echo "servers/build.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# Prefer the Debian client, as .ci/dockerd.sh does.
docker_cli() {
	if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Keep the packages' services from starting on the host (Docker's base
	# images ship the same policy); an existing policy is left alone.
	local policy=/usr/sbin/policy-rc.d added=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		added=1
	fi
	local rc=0
	if ! apt-get install -y -q "${missing[@]}" >/tmp/servers-apt.log 2>&1; then
		apt-get update -q >>/tmp/servers-apt.log 2>&1 || true
		apt-get install -y -q "${missing[@]}" >>/tmp/servers-apt.log 2>&1 || rc=$?
	fi
	[[ -n $added ]] && rm -f "$policy"
	if [[ $rc -ne 0 ]]; then
		tail -20 /tmp/servers-apt.log >&2
		die "apt-get install ${missing[*]} failed"
	fi
}

# The newest PostgreSQL major installed.
pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[[ -x $d/postgres ]] || die "no postgres under /usr/lib/postgresql/*/bin"
	echo "$d"
}

# build_hash: this script and the versions of every package a rootfs copies from.
build_hash() {
	local major owners
	major=$(basename "$(dirname "$(pg_bindir)")")
	owners=$(dpkg -S /usr/sbin/nginx /usr/bin/redis-server /bin/busybox /usr/sbin/mariadbd 2>/dev/null | cut -d: -f1 | sort -u | tr '\n' ' ' || true)
	{
		cat "$SELF"
		# shellcheck disable=SC2086
		dpkg-query -W -f='${Package} ${Version}\n' $owners "postgresql-$major" libc6 libssl3 2>/dev/null | sort || true
	} | sha256sum | cut -c1-16
}

image_current() {
	local got
	got=$(docker_cli image inspect -f '{{index .Config.Labels "cagewatch.build"}}' "$1" 2>/dev/null || true)
	[[ "$got" == "$HASH" ]]
}

# copy_file ROOT PATH...: each file (symlinks followed) to the same path in ROOT.
copy_file() {
	local root=$1 f
	shift
	for f in "$@"; do
		[[ -e $root$f ]] && continue
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
	done
}

# add_elf ROOT FILE...: the files and every shared library ldd resolves for them.
add_elf() {
	local root=$1 f lib
	shift
	for f in "$@"; do
		copy_file "$root" "$f"
		while read -r lib; do
			copy_file "$root" "$lib"
		done < <(ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}')
	done
}

# new_rootfs ROOT: the skeleton shared by every image.
new_rootfs() {
	local root=$1
	mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,run,root,var/tmp,var/log,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu}
	chmod 1777 "$root/tmp" "$root/var/tmp"
	cp /bin/busybox "$root/bin/busybox"
	chroot "$root" /bin/busybox --install -s /bin
	ln -s /run "$root/var/run"
	printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
	printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$root/etc/ld.so.conf"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# finish ROOT IMAGE CHANGE...: the library cache, then docker import with the
# build label and the given Dockerfile changes (CMD, USER, …).
finish() {
	local root=$1 image=$2
	shift 2
	ldconfig -r "$root"
	local args=(-c "LABEL cagewatch.build=$HASH")
	local c
	for c in "$@"; do args+=(-c "$c"); done
	local old
	old=$(docker_cli image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
	tar --numeric-owner -C "$root" -cf "$root.tar" .
	docker_cli import "${args[@]}" "$root.tar" "$image" >/dev/null
	rm -f "$root.tar"
	# The previous build, now untagged, is dropped (kept while a container uses it).
	[[ -z $old ]] || docker_cli rmi "$old" >/dev/null 2>&1 || true
	log "built $image ($(docker_cli image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_nginx() {
	local root=$WORK/nginx
	new_rootfs "$root"
	add_elf "$root" /usr/sbin/nginx
	echo 'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin' >>"$root/etc/passwd"
	echo 'www-data:x:33:' >>"$root/etc/group"
	mkdir -p "$root"/etc/nginx "$root"/var/lib/nginx "$root"/var/log/nginx "$root"/var/www/html
	cp /etc/nginx/mime.types "$root/etc/nginx/mime.types"
	cat >"$root/etc/nginx/nginx.conf" <<'CONF'
user www-data;
worker_processes auto;
pid /run/nginx.pid;
daemon off;
error_log /var/log/nginx/error.log warn;
events { worker_connections 512; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 15;
	access_log /var/log/nginx/access.log;
	server {
		listen 80 default_server;
		root /var/www/html;
		index index.html;
		location / { try_files $uri $uri/ =404; }
	}
}
CONF
	# A static page of a few kilobytes.
	{
		echo '<!DOCTYPE html><html><head><title>cagewatch test page</title></head><body>'
		for i in $(seq 1 60); do echo "<p>Paragraph $i of a static page served by nginx for the cagewatch server test.</p>"; done
		echo '</body></html>'
	} >"$root/var/www/html/index.html"
	finish "$root" "$PREFIX/nginx:1" 'CMD ["/usr/sbin/nginx"]' 'EXPOSE 80'
}

build_redis() {
	local root=$WORK/redis
	new_rootfs "$root"
	# Copied as a file under its own name: Debian's is a symlink to
	# redis-check-rdb, and the binary picks its mode from the name it runs as.
	add_elf "$root" /usr/bin/redis-server
	echo 'redis:x:999:999:redis:/var/lib/redis:/usr/sbin/nologin' >>"$root/etc/passwd"
	echo 'redis:x:999:' >>"$root/etc/group"
	mkdir -p "$root/etc/redis" "$root/var/lib/redis"
	chown 999:999 "$root/var/lib/redis"
	# Snapshots every 12 s once 100 keys changed: redis's fastest default rule
	# under load (60 s) scaled as the test's 2 s windows scale the agent's 10 s
	# default, so the periodic background save (fork, write, fsync, rename) keeps
	# its production period in windows and a baseline sees it many times in
	# the test's minutes, as it would in hours of production learning.
	cat >"$root/etc/redis/redis.conf" <<'CONF'
bind 0.0.0.0
protected-mode no
port 6379
daemonize no
supervised no
logfile ""
dir /var/lib/redis
dbfilename dump.rdb
save 12 100
appendonly no
CONF
	finish "$root" "$PREFIX/redis:1" 'USER 999:999' 'CMD ["/usr/bin/redis-server", "/etc/redis/redis.conf"]' 'EXPOSE 6379'
}

build_postgres() {
	local root=$WORK/postgres bindir share libdir f
	bindir=$(pg_bindir)
	libdir=$(dirname "$bindir")/lib
	share=/usr/share/postgresql/$(basename "$(dirname "$bindir")")
	[[ -d $share ]] || die "no $share"
	local uid gid
	uid=$(id -u postgres) || die "no postgres user (package postgresql-common)"
	gid=$(id -g postgres)
	new_rootfs "$root"
	add_elf "$root" "$bindir/postgres"
	# The loadable modules (plpgsql, text search dictionaries, …), except the
	# LLVM JIT: jit is off, and libLLVM alone would triple the image.
	for f in "$libdir"/*.so; do
		case $(basename "$f") in llvmjit*) continue ;; esac
		add_elf "$root" "$f"
	done
	mkdir -p "$root$share"
	cp -a "$share/." "$root$share/"
	mkdir -p "$root/usr/share/zoneinfo/Etc"
	cp -a /usr/share/zoneinfo/Etc/UTC "$root/usr/share/zoneinfo/Etc/UTC"
	ln -s Etc/UTC "$root/usr/share/zoneinfo/UTC"
	echo "postgres:x:$uid:$gid:PostgreSQL:/var/lib/postgresql:/bin/sh" >>"$root/etc/passwd"
	echo "postgres:x:$gid:" >>"$root/etc/group"
	local data=$root/var/lib/postgresql/data sock=$WORK/pgsock
	mkdir -p "$data" "$sock" "$root/run/postgresql"
	chown -R "$uid:$gid" "$root/var/lib/postgresql" "$sock" "$root/run/postgresql"
	chmod 700 "$data"
	as_pg() { setpriv --reuid="$uid" --regid="$gid" --clear-groups -- env -i PATH=/usr/bin:/bin TZ=UTC LC_ALL=C "$@"; }
	# initdb and the pgbench tables with the host's binaries (the same files
	# as in the image), as the postgres user: a data directory is relocatable.
	as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust --locale=C --encoding=UTF8 >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; die "initdb failed"; }
	# Listen everywhere with trust auth for the benchmark client on the host. The
	# background work a production baseline sees many times in hours of learning
	# (checkpoints, autovacuum rounds) comes within the test's minutes: the
	# shortest checkpoint interval, a 10 s autovacuum nap and thresholds of 1% of
	# a table (so vacuum and analyze read pgbench_accounts in, with pread64 and
	# fadvise64 prefetch, while learning too), as the 2 s windows compress the
	# agent's time scale.
	cat >>"$data/postgresql.conf" <<'CONF'

# cagewatch-e2e/postgres:1
listen_addresses = '*'
unix_socket_directories = '/run/postgresql'
jit = off
checkpoint_timeout = 30s
autovacuum_naptime = 10s
autovacuum_vacuum_scale_factor = 0.01
autovacuum_analyze_scale_factor = 0.01
autovacuum_vacuum_insert_scale_factor = 0.01
log_destination = 'stderr'
logging_collector = off
CONF
	cat >"$data/pg_hba.conf" <<'CONF'
local all all trust
host all all 0.0.0.0/0 trust
host all all ::/0 trust
CONF
	as_pg "$bindir/pg_ctl" -D "$data" -w -t 60 -l "$sock/pg.log" \
		-o "-c listen_addresses= -c unix_socket_directories=$sock -p 54329" start >/dev/null ||
		{ cat "$sock/pg.log" >&2; die "postgres did not start for the pgbench tables"; }
	local rc=0
	as_pg "$bindir/pgbench" -i -s 1 -q -h "$sock" -p 54329 -U postgres postgres >"$WORK/pgbench-init.log" 2>&1 || rc=$?
	as_pg "$bindir/pg_ctl" -D "$data" -w -t 60 -m fast stop >/dev/null || true
	[[ $rc -eq 0 ]] || { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
	rm -f "$data/postmaster.pid" "$data/postmaster.opts"
	finish "$root" "$PREFIX/postgres:1" "USER $uid:$gid" 'ENV TZ=UTC LC_ALL=C' \
		'CMD ["'"$bindir"'/postgres", "-D", "/var/lib/postgresql/data"]' 'EXPOSE 5432'
}

build_mariadb() {
	local root=$WORK/mariadb data sock=$WORK/mdbsock
	new_rootfs "$root"
	add_elf "$root" /usr/sbin/mariadbd
	mkdir -p "$root/usr/share/mysql"
	cp -a /usr/share/mysql/. "$root/usr/share/mysql/"
	echo 'mysql:x:999:999:MariaDB:/var/lib/mysql:/usr/sbin/nologin' >>"$root/etc/passwd"
	echo 'mysql:x:999:' >>"$root/etc/group"
	data=$root/var/lib/mysql
	mkdir -p "$data" "$root/run/mysqld" "$sock"
	mariadb-install-db --no-defaults --user=root --datadir="$data" --auth-root-authentication-method=normal \
		--skip-test-db >"$WORK/mariadb-install.log" 2>&1 || { cat "$WORK/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
	mariadbd --no-defaults --user=root --datadir="$data" --socket="$sock/s.sock" --skip-networking \
		--pid-file="$sock/pid" >"$WORK/mariadb-init.log" 2>&1 &
	local i
	for i in $(seq 1 60); do
		[[ -S $sock/s.sock ]] && mariadb --no-defaults -S "$sock/s.sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
		sleep 0.5
	done
	mariadb --no-defaults -S "$sock/s.sock" -u root -e "
		CREATE DATABASE bench;
		CREATE TABLE bench.kv (k INT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB;
		CREATE USER 'root'@'%' IDENTIFIED BY '';
		GRANT ALL ON *.* TO 'root'@'%';" || { cat "$WORK/mariadb-init.log" >&2; die "creating the bench table failed"; }
	mariadb-admin --no-defaults -S "$sock/s.sock" -u root shutdown >/dev/null 2>&1 || kill "$(cat "$sock/pid")"
	wait || true
	chown -R 999:999 "$data" "$root/run/mysqld"
	cat >"$root/etc/my.cnf" <<'CONF'
[mysqld]
datadir = /var/lib/mysql
socket = /run/mysqld/mysqld.sock
bind-address = 0.0.0.0
skip-name-resolve
innodb_buffer_pool_size = 64M
CONF
	finish "$root" "$PREFIX/mariadb:1" 'USER 999:999' 'CMD ["/usr/sbin/mariadbd", "--defaults-file=/etc/my.cnf"]' 'EXPOSE 3306'
}

main() {
	[[ $(id -u) -eq 0 ]] || die "must run as root"
	docker_cli info >/dev/null 2>&1 || die "docker is not running (.ci/dockerd.sh start)"
	install_packages
	HASH=$(build_hash)
	local name todo=()
	for name in nginx redis postgres mariadb; do
		if image_current "$PREFIX/$name:1"; then
			log "$PREFIX/$name:1 is current (cagewatch.build=$HASH)"
		else
			todo+=("$name")
		fi
	done
	[[ ${#todo[@]} -eq 0 ]] && return 0
	WORK=$(mktemp -d /tmp/cagewatch-servers.XXXXXX)
	chmod 755 "$WORK"
	# shellcheck disable=SC2064
	trap "rm -rf '$WORK'" EXIT
	for name in "${todo[@]}"; do
		log "building $PREFIX/$name:1"
		"build_$name"
	done
}

main "$@"
