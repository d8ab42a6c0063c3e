# shellcheck shell=bash disable=SC2034
# Shared settings of hack/cluster/{build,up,down,smoke}. Sourced, not run.

CLUSTER_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Pinned versions (keep in sync with the go.mod files under go/).
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CERT_MANAGER_VERSION=v1.21.2
# The cluster DNS (hack/cluster/go/coredns: CoreDNS with only the plugins it needs).
COREDNS_VERSION=v1.14.2
# The real node's parts (hack/cluster/node): containerd, the CNI plugins, crictl, and the pause image
# built from k8s.io/kubernetes' build/pause (kubelet and kube-proxy come from the k8s module).
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
CRI_TOOLS_VERSION=v1.37.0
PAUSE_VERSION=3.10.2
# containerd's sandbox image (hack/cluster/images writes it).
PAUSE_IMAGE="localhost/mssql-operator-test/pause:$PAUSE_VERSION"
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
# The cluster DNS: its /ready on loopback, and its DNS port on loopback when the plane has no real
# node (with one it answers on the node's bridge, port 53, where pods ask it; see dns_listen).
DNS_READY_PORT="${MSSQL_CLUSTER_DNS_READY_PORT:-20181}"
DNS_PORT="${MSSQL_CLUSTER_DNS_PORT:-20053}"
CLUSTER_DOMAIN=cluster.local
SERVICE_CIDR=10.96.0.0/16

# The real node (opt-in: MSSQL_CLUSTER_REAL_NODE=1 or `up --real-node`; see hack/cluster/node).
# One per machine: its bridge, iptables chains and /kubepods cgroups are machine-wide names.
REAL_NODE="${MSSQL_CLUSTER_REAL_NODE:-0}"
NODE_NAME=real-1
NODE_DIR="$CLUSTER_DIR/node"
NODE_BRIDGE=mssqlbr0
NODE_GATEWAY=10.250.0.1      # the bridge's address: pods' gateway, the node IP, the API server's
NODE_SUBNET=10.250.0.0/24    # the pods' addresses
NODE_TAINT_KEY=mssql-operator.test/real-node
NODE_LABEL_KEY=mssql-operator.test/node
NODE_LABEL_VALUE=real
KUBELET_PORT="${MSSQL_CLUSTER_KUBELET_PORT:-20250}"
KUBELET_HEALTHZ_PORT="${MSSQL_CLUSTER_KUBELET_HEALTHZ_PORT:-20248}"
PROXY_HEALTHZ_PORT="${MSSQL_CLUSTER_PROXY_HEALTHZ_PORT:-20256}"
PROXY_METRICS_PORT="${MSSQL_CLUSTER_PROXY_METRICS_PORT:-20249}"
# The isolation chains (in FORWARD and OUTPUT) the node adds, and the sysctls something on the node
# may change (the CNI bridge plugin turns on forwarding; kubelet sets its kernel tunables); `node
# down` puts each back to the value saved before the first change.
NODE_CHAIN_FORWARD=MSSQL-NODE-FWD
NODE_CHAIN_OUTPUT=MSSQL-NODE-OUT
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.forwarding vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# The addresses the plane only pretends to have (kwok's node IP and pod range, and ClusterIPs that
# kube-proxy did not translate): traffic to them is refused on the host rather than routed out.
NODE_REFUSED_DESTINATIONS=(10.0.0.1/32 10.244.0.0/16 10.96.0.0/16)

# The plane's components, in start order (up), the reverse of stop order (down), and what status
# lists: etcd, the API server, then the API server's clients, started and checked once it answers
# /readyz. coredns is the cluster DNS (CoreDNS's kubernetes plugin, see hack/cluster/up).
PLANE_CLIENTS=(kube-controller-manager kube-scheduler kwok cert-manager coredns)
PLANE_COMPONENTS=(etcd kube-apiserver "${PLANE_CLIENTS[@]}")

# Where kube-apiserver listens: loopback, or the node's bridge so that pods reach it.
apiserver_host() { if [ "$REAL_NODE" = 1 ]; then echo "$NODE_GATEWAY"; else echo "$CLUSTER_HOST"; fi; }
# dns_listen API-SERVER-HOST: `ADDRESS PORT` where the cluster DNS answers: beside the API server,
# on the node's bridge at port 53 (the kubelet's clusterDNS: a resolv.conf has no port), or on
# loopback at DNS_PORT.
dns_listen() { if [ "$1" = "$NODE_GATEWAY" ]; then echo "$NODE_GATEWAY 53"; else echo "$CLUSTER_HOST $DNS_PORT"; fi; }

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

# --- PKI and kubeconfigs ----------------------------------------------------------------------
CLIENT_CERT_EXTENSIONS='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
# sign_cert CA OUT SUBJECT EXTENSIONS: a new RSA key OUT.key and certificate OUT.crt for SUBJECT,
# signed by CA.crt/CA.key, with the (newline-separated) x509v3 EXTENSIONS.
sign_cert() {
  local ca="$1" out="$2" subject="$3" extensions="$4"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$out.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 3650 -sha256 -out "$out.crt" \
      -extfile <(printf '%s\n' "$extensions") 2>/dev/null
  chmod 600 "$out.key"
}
# write_kubeconfig FILE SERVER CA-CERT USER CLIENT-CERT CLIENT-KEY: a self-contained kubeconfig
# (certificates embedded, usable by any client), mode 0600.
write_kubeconfig() {
  local file="$1" server="$2" ca="$3" user="$4" cert="$5" key="$6"
  kubectl config --kubeconfig="$file" set-cluster mssql-operator-test --server="$server" \
    --certificate-authority="$ca" --embed-certs >/dev/null
  kubectl config --kubeconfig="$file" set-credentials "$user" --client-certificate="$cert" \
    --client-key="$key" --embed-certs >/dev/null
  kubectl config --kubeconfig="$file" set-context mssql-operator-test --cluster=mssql-operator-test \
    --user="$user" >/dev/null
  kubectl config --kubeconfig="$file" use-context mssql-operator-test >/dev/null
  chmod 600 "$file"
}

# --- processes: recorded as PID plus kernel start time, so a recycled PID is never signalled ------
# proc_start PIDS-DIR LOG-FILE NAME COMMAND...: starts COMMAND in its own session, in the background,
# under hack/cluster/supervise (started again if it exits, as a kubelet restarts a static pod),
# appending to LOG-FILE (a restarted component's earlier output stays, after a line naming the
# start). Returns once the PID file is written.
proc_start() {
  local pids="$1" logfile="$2" name="$3"; shift 3
  printf '=== %s started by hack/cluster at %s\n' "$name" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$logfile"
  rm -f "$pids/$name.pid"
  setsid "$CLUSTER_HACK_DIR/supervise" "$pids/$name.pid" "$logfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  for _ in $(seq 50); do [ -s "$pids/$name.pid" ] && return 0; sleep 0.1; done
  log "$name: no PID file after 5s"
  return 1
}
# proc_runs PIDS-DIR NAME [LINE]: the process whose PID and start time are on lines LINE and
# LINE+1 of its PID file runs (line 1: the component; line 4: its supervisor). A killed process
# that is a zombie until it is reaped does not.
proc_runs() {
  local f="$1/$2.pid" line="${3:-1}" pid stat
  [ -s "$f" ] || return 1
  pid="$(sed -n "${line}p" "$f")"
  [ -n "$pid" ] || return 1
  stat="$(cut -d' ' -f3,22 "/proc/$pid/stat" 2>/dev/null)" || return 1
  case "$stat" in Z\ *|X\ *) return 1 ;; esac
  [ "${stat#* }" = "$(sed -n "$((line + 1))p" "$f")" ]
}
# proc_alive PIDS-DIR NAME: the recorded process runs, or its supervisor does and is about to
# start it again (so nothing else may start a second one).
proc_alive() { proc_runs "$1" "$2" || proc_runs "$1" "$2" 4; }
# proc_stop PIDS-DIR SECONDS NAME...: stops the supervisors, then SIGTERMs the recorded processes
# together, waits up to SECONDS, then SIGKILLs what is left; removes their PID files.
proc_stop() {
  local pids="$1" secs="$2"; shift 2
  local name pid live=()
  for name in "$@"; do
    if proc_runs "$pids" "$name" 4; then kill -KILL "$(sed -n 4p "$pids/$name.pid")" 2>/dev/null || true; fi
  done
  for name in "$@"; do
    if proc_runs "$pids" "$name"; then
      pid="$(head -n1 "$pids/$name.pid")"
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$pid:$name")
    fi
  done
  local deadline=$(( $(date +%s) + secs )) left p
  while [ "${#live[@]}" -gt 0 ]; do
    left=()
    for p in "${live[@]}"; do [ -d "/proc/${p%%:*}" ] && left+=("$p"); done
    live=("${left[@]}")
    [ "${#live[@]}" = 0 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for p in "${live[@]}"; do
        log "${p#*:} (pid ${p%%:*}) did not stop in ${secs}s; killing it"
        kill -KILL "${p%%:*}" 2>/dev/null || true
      done
      sleep 1
      break
    fi
    sleep 0.1
  done
  for name in "$@"; do rm -f "$pids/$name.pid"; done
}
# rss_line LABEL PID: `LABEL PID RSS-MiB`, adding the RSS to RSS_TOTAL (KiB).
RSS_TOTAL=0
rss_line() {
  local rss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$2/status" 2>/dev/null) || return 0
  RSS_TOTAL=$((RSS_TOTAL + rss))
  printf '%-26s %8s %10.1f\n' "$1" "$2" "$(awk -v r="$rss" 'BEGIN {print r / 1024}')"
}
# proc_rss_line PIDS-DIR NAME: the rss_line of a recorded process, or `NAME - DOWN` and exit 1.
proc_rss_line() {
  if proc_runs "$1" "$2"; then
    rss_line "$2" "$(head -n1 "$1/$2.pid")"
  else
    printf '%-26s %8s %10s\n' "$2" "-" "DOWN"
    return 1
  fi
}

# node_shims: the PIDs of the real node's containerd shims (one per pod; they outlive containerd),
# found by the containerd socket on their command line.
node_shims() {
  local p
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
      *containerd-shim-runc-v2*"-address $NODE_DIR/run/containerd.sock"*) echo "${p#/proc/}" ;;
    esac
  done
}

# wait_for [proc=PIDS-DIR/NAME] WHAT SECONDS COMMAND...: polls COMMAND until it succeeds; fails,
# with a log line, at the deadline, or at once when the recorded process NAME has exited.
wait_for() {
  local proc=""
  case "$1" in proc=*) proc="${1#proc=}"; shift ;; esac
  local what="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$proc" ] && ! proc_alive "$(dirname "$proc")" "$(basename "$proc")"; then
      log "$(basename "$proc") exited while waiting for $what; see its log"; return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then log "timed out after ${secs}s waiting for $what"; return 1; fi
    sleep 0.2
  done
}
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
