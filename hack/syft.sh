#!/usr/bin/env bash
# Builds syft, the SBOM generator of the SBOM tests and fixtures, from its Go
# module pinned in hack/syft/go.mod (its own module: syft is no dependency of
# the agent), to bin/syft, when bin/syft is missing or older than
# hack/syft/go.sum or hack/syft/go.mod. Prints the build time.
#
#   hack/syft.sh              build if needed; print bin/syft's path on stdout
#   hack/syft.sh ARGS...      build if needed, then run bin/syft ARGS... with
#                             SYFT_CHECK_FOR_APP_UPDATE=false (no network), e.g.
#                             hack/syft.sh scan docker:cagewatch/busybox:1 -o spdx-json
#
# Measured with syft v1.57.1 and go1.26.8 on 2 cores: from a cold module and
# build cache the build downloads about 450 MB of module zips (2.1 GB
# unpacked, 1.1 GB of build cache) and takes about 13 minutes; with the
# modules cached, about 5.5 minutes; with the build cache warm too, about 20 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin/syft
mod=$root/hack/syft

if [[ ! -x $bin || $mod/go.sum -nt $bin || $mod/go.mod -nt $bin ]]; then
	version=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/anchore/syft)
	echo "syft.sh: building syft $version to bin/syft" >&2
	start=$(date +%s)
	mkdir -p "$root/bin"
	(cd "$mod" && go build -ldflags "-X main.version=$version" -o "$bin.tmp.$$" github.com/anchore/syft/cmd/syft)
	mv "$bin.tmp.$$" "$bin"
	echo "syft.sh: built syft $version in $(($(date +%s) - start)) s" >&2
fi

export SYFT_CHECK_FOR_APP_UPDATE=false
if [[ $# -eq 0 ]]; then
	echo "$bin"
	exit 0
fi
exec "$bin" "$@"
