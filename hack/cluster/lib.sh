# shellcheck shell=bash disable=SC2034
# Shared settings of hack/cluster/{build,up,down,smoke}. Sourced, not run.

CLUSTER_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions (keep in sync with the go.mod files under go/).
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CERT_MANAGER_VERSION=v1.21.2
# Bump to force a rebuild when the build recipe itself changes.
CLUSTER_BUILD_RECIPE=1


# Run directory (PID files, PKI, kubeconfig, logs, etcd data).
CLUSTER_DIR="${MSSQL_CLUSTER_DIR:-${XDG_RUNTIME_DIR:-/tmp}/mssql-operator-cluster}"

# Loopback ports, chosen away from the usual defaults (2379, 6443, 10257, ...).
CLUSTER_HOST=127.0.0.1
ETCD_PORT="${MSSQL_CLUSTER_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${MSSQL_CLUSTER_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${MSSQL_CLUSTER_APISERVER_PORT:-16443}"
KCM_PORT="${MSSQL_CLUSTER_KCM_PORT:-20257}"
SCHEDULER_PORT="${MSSQL_CLUSTER_SCHEDULER_PORT:-20259}"
KWOK_PORT="${MSSQL_CLUSTER_KWOK_PORT:-20247}"
CERT_MANAGER_HEALTH_PORT="${MSSQL_CLUSTER_CERT_MANAGER_PORT:-20403}"

# cluster_lock: serialise up/down on one run dir (flock on a file beside it).
# Daemons must not inherit the lock's descriptor (start them with 9>&-).
cluster_lock() {
  [ "${MSSQL_CLUSTER_LOCK_HELD:-}" = "$CLUSTER_DIR" ] && return 0
  mkdir -p "$(dirname "$CLUSTER_DIR")"
  exec 9>"$CLUSTER_DIR.lock"
  if command -v flock >/dev/null; then
    flock -w 600 9 || die "could not lock $CLUSTER_DIR.lock within 600s"
  fi
  export MSSQL_CLUSTER_LOCK_HELD="$CLUSTER_DIR"
}

log() { printf '[cluster %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# go_modules_hash DIR RECIPE: 16 hex digits over everything that determines the binaries built
# from the wrapper Go modules under DIR: their go.mod/go.sum, their Go sources, the Go version and
# a recipe number.
go_modules_hash() {
  (
    cd "$1" || exit 1
    {
      echo "recipe=$2"
      go env GOVERSION GOOS GOARCH
      find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | xargs sha256sum
    } | sha256sum | cut -c1-16
  )
}
cluster_hash() { go_modules_hash "$CLUSTER_HACK_DIR/go" "$CLUSTER_BUILD_RECIPE"; }

# The settings of every build of a wrapper module (the committed go.sum is authoritative).
go_build_env() { export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0; }

# go_build_into MODULE-DIR BIN-DIR OUTPUT-NAMES... -- GO-BUILD-ARGS...: builds the outputs missing
# from BIN-DIR in MODULE-DIR (under nice, into a temporary directory, then moved, so a killed build
# leaves no half-written binary). Sets GO_BUILT=1 when it built something.
GO_BUILT=0
go_build_into() {
  local mod="$1" bin="$2"; shift 2
  local outs=()
  while [ "$1" != -- ]; do outs+=("$1"); shift; done
  shift
  local missing=0
  for o in "${outs[@]}"; do [ -x "$bin/$o" ] || missing=1; done
  if [ "$missing" = 0 ]; then return 0; fi
  local tmp start
  mkdir -p "$bin"
  tmp="$(mktemp -d "$bin/../.build.XXXXXX")"
  start=$(date +%s)
  log "building ${outs[*]} (module $mod) ..."
  if ! (cd "$mod" && nice -n "${MSSQL_CLUSTER_NICE:-10}" go build -trimpath -pgo=off -o "$tmp/" "$@") >&2; then
    rm -rf "$tmp"
    die "go build failed for ${outs[*]}"
  fi
  for o in "${outs[@]}"; do
    [ -x "$tmp/$o" ] || { rm -rf "$tmp"; die "expected binary $o was not produced"; }
    mv -f "$tmp/$o" "$bin/$o"
  done
  rm -rf "$tmp"
  GO_BUILT=1
  log "built ${outs[*]} in $(( $(date +%s) - start ))s"
}

mssql_cache_root() { echo "${XDG_CACHE_HOME:-$HOME/.cache}/mssql-operator"; }
cluster_cache_root() { echo "$(mssql_cache_root)/cluster"; }
cluster_cache_dir() { echo "$(cluster_cache_root)/$(cluster_hash)"; }
