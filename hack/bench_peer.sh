# shellcheck shell=bash
# The peer operator beside ours (hack/bench --peer, issue 16): mariadb-operator, built by
# hack/peer/build, measured on the same plane as ours (`plane`: fake nodes, static PVs, the
# namespace, the CA and the Issuer) with the same sampler, watch log and audit log, as scenario
# peer-N after standalone-N. Sourced by hack/bench once its functions are defined; not run.
#
# What differs, and why:
# - Its identity is its chart's, rendered for a namespace-scoped install (currentNamespaceOnly,
#   no webhook, no cert-controller): a ServiceAccount, Role and RoleBinding in the databases'
#   namespace, which that install also makes the operator's own namespace (the chart sets
#   WATCH_NAMESPACE to the release namespace). Its token is in a kubeconfig of its own, as ours.
# - Ready is its MariaDB's Ready condition (True once the StatefulSet's replicas are ready); it
#   writes no phase.
# - The idle window starts after the settle time only: it has no reconcile counter to wait on.
# - On kwok's fake pods its SQL reconcilers cannot connect and requeue, so what it does after
#   Ready is an artefact of fake databases; the report keeps those figures apart.
# - It is confined: it runs as uid $PEER_UID, whose packets may only go to loopback (it would
#   otherwise connect to pod and Service addresses and ask the machine's resolver for cluster
#   names; benchmarks send traffic to loopback only). Without those rules it is never started.

PEER_UID=64321
PEER_CHAIN=MSSQL-BENCH-PEER
PEER_SA=mariadb-operator
# Our operator has no client-side rate limit; the peer's (20 QPS, burst 30 by default) is lifted
# so that both are limited by the API server alone. -1 turns client-go's limiter off.
PEER_QPS=-1 PEER_BURST=1000
PEER_DIR=""      # the peer's files for the current scenario (binary copy, kubeconfig, home)
PEER_FIREWALL=0  # 1 once this run created the chain: only then does it remove it

for tool in setpriv iptables ip6tables; do
  command -v "$tool" >/dev/null || die "--peer needs $tool (the peer runs confined)"
done
[ "$(id -u)" = 0 ] || die "--peer needs root: it installs iptables rules and runs the peer as uid $PEER_UID"
# Another run's chain (a hack/bench --peer running now, or one killed before its trap): never
# reuse or remove what this run did not create.
if iptables -S "$PEER_CHAIN" >/dev/null 2>&1 || ip6tables -S "$PEER_CHAIN" >/dev/null 2>&1; then
  die "iptables chain $PEER_CHAIN exists (another hack/bench --peer, or a leftover: remove it by hand)"
fi
# The uid must be the peer's alone: the rules confine every process of it.
if [ -n "$(ps -o pid= -u "$PEER_UID" 2>/dev/null)" ]; then
  die "processes run as uid $PEER_UID; the peer needs that uid for itself"
fi

say "building the peer operator (hack/peer/build)"
mapfile -t _peer_build < <(hack/peer/build) || true
PEER_BIN="${_peer_build[0]:-}" PEER_CRDS="${_peer_build[1]:-}"
[ -x "$PEER_BIN" ] && [ -s "$PEER_CRDS" ] || die "hack/peer/build failed"
PEER_CHART="$(dirname "$(dirname "$PEER_CRDS")")/charts/mariadb-operator"
[ -d "$PEER_CHART" ] || die "no chart at $PEER_CHART"
PEER_VERSION="$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$PEER_CHART/Chart.yaml")"

# Its chart, rendered as a namespace-scoped install. The chart lists its CRDs chart as a
# dependency (disabled, but helm wants it in charts/): a copy with the sibling chart put there.
_peer_chart_copy="$(mktemp -d)"
cp -r "$PEER_CHART" "$_peer_chart_copy/"
chmod -R u+w "$_peer_chart_copy"
mkdir -p "$_peer_chart_copy/mariadb-operator/charts"
cp -r "$(dirname "$PEER_CHART")/mariadb-operator-crds" "$_peer_chart_copy/mariadb-operator/charts/"
_peer_template() {
  hack/helm template "$PEER_SA" "$_peer_chart_copy/mariadb-operator" --namespace "$NS" \
    --set currentNamespaceOnly=true --set webhook.enabled=false --set certController.enabled=false "$@"
}
_peer_template --show-only templates/operator/serviceaccount.yaml \
  --show-only templates/operator/rbac-namespace.yaml > "$OUT/peer-rbac.yaml" || die "hack/helm template (peer RBAC) failed"
# Its environment: the ConfigMap the chart gives its Deployment (images, versions from the
# values' `config:`), and what the Deployment sets beside it.
_peer_template --show-only templates/operator/configmap.yaml |
  sed -n 's/^  \([A-Z_][A-Z0-9_]*\): "\(.*\)"$/\1=\2/p' > "$OUT/peer.env" || die "hack/helm template (peer env) failed"
rm -rf "$_peer_chart_copy"
grep -q '^RELATED_IMAGE_MARIADB=' "$OUT/peer.env" || die "no RELATED_IMAGE_MARIADB in the peer chart's ConfigMap"
{
  echo "CLUSTER_NAME=cluster.local"
  echo "WATCH_NAMESPACE=$NS"
  echo "MARIADB_OPERATOR_NAME=$PEER_SA"
  echo "MARIADB_OPERATOR_NAMESPACE=$NS"
  # The token file of an in-cluster pod; out of cluster it has none (its agent's auth is unused).
  echo "MARIADB_OPERATOR_SA_PATH=/dev/null"
} >> "$OUT/peer.env"
{
  printf 'peer=mariadb-operator %s\n' "$PEER_VERSION"
  printf 'peer_rbac=%s\n' "its chart's Role and RoleBinding (currentNamespaceOnly=true), in namespace $NS"
  printf 'peer_client_limit=%s\n' "qps $PEER_QPS (off), burst $PEER_BURST"
} >> "$OUT/machine.txt"

# --- confinement ----------------------------------------------------------------------------------
# peer_firewall_on: an OUTPUT chain of our own, first in OUTPUT: the peer's uid may send to
# loopback only, and not to port 53 there either (a local stub resolver would send its questions
# on); a TCP connect elsewhere is reset at once (an ICMP answer would make it retry for a second).
# Fails (and the peer is not started) if any rule cannot be installed.
peer_firewall_on() {
  local ipt lo
  for ipt in iptables ip6tables; do
    lo=127.0.0.0/8
    [ "$ipt" = ip6tables ] && lo=::1/128
    "$ipt" -N "$PEER_CHAIN" || return 1
    PEER_FIREWALL=1
    "$ipt" -A "$PEER_CHAIN" -m owner --uid-owner "$PEER_UID" -p udp --dport 53 -j REJECT &&
      "$ipt" -A "$PEER_CHAIN" -m owner --uid-owner "$PEER_UID" -p tcp --dport 53 -j REJECT &&
      "$ipt" -A "$PEER_CHAIN" -m owner --uid-owner "$PEER_UID" -d "$lo" -j RETURN &&
      "$ipt" -A "$PEER_CHAIN" -m owner --uid-owner "$PEER_UID" -p tcp -j REJECT --reject-with tcp-reset &&
      "$ipt" -A "$PEER_CHAIN" -m owner --uid-owner "$PEER_UID" -j REJECT &&
      "$ipt" -I OUTPUT 1 -j "$PEER_CHAIN" || return 1
  done
}
# peer_firewall_off: the jumps, then the chain; only what this run created, whatever state it is in.
peer_firewall_off() {
  [ "$PEER_FIREWALL" = 1 ] || return 0
  local ipt
  for ipt in iptables ip6tables; do
    while "$ipt" -D OUTPUT -j "$PEER_CHAIN" 2>/dev/null; do :; done
    "$ipt" -F "$PEER_CHAIN" 2>/dev/null || true
    "$ipt" -X "$PEER_CHAIN" 2>/dev/null || true
  done
  PEER_FIREWALL=0
}
# peer_confined: the jump is OUTPUT's first rule in both families (checked again by the wrapper
# just before it starts the peer).
peer_confined() {
  [ "$(iptables -S OUTPUT | sed -n 2p)" = "-A OUTPUT -j $PEER_CHAIN" ] &&
    [ "$(ip6tables -S OUTPUT | sed -n 2p)" = "-A OUTPUT -j $PEER_CHAIN" ]
}
# peer_probe: proves the rules apply: a connect as the peer's uid to this machine's own
# non-loopback address (delivered locally, so nothing leaves the machine whatever happens) must
# be counted by the chain's TCP reset rule.
peer_probe() {
  local addr before after
  addr="$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')"
  [ -n "$addr" ] || { say "  (no non-loopback address to probe the rules with; relying on the rules being in place)"; return 0; }
  before="$(iptables -L "$PEER_CHAIN" -v -x -n | awk '/tcp-reset/ {n = $1} END {print n + 0}')"
  setpriv --reuid "$PEER_UID" --regid "$PEER_UID" --clear-groups \
    timeout 5 bash -c "exec 3<>/dev/tcp/$addr/9" 2>/dev/null && return 1
  after="$(iptables -L "$PEER_CHAIN" -v -x -n | awk '/tcp-reset/ {n = $1} END {print n + 0}')"
  [ "$after" -gt "$before" ]
}

# The EXIT trap: the peer stops before its rules go, then hack/bench's own cleanup.
trap 'stop_operator; peer_firewall_off; [ -z "$PEER_DIR" ] || rm -rf "$PEER_DIR"; cleanup' EXIT

# --- identity, wrapper ------------------------------------------------------------------------------
# peer_identity: the chart's ServiceAccount, Role and RoleBinding; a token; the peer's files in a
# directory of its own under /tmp (uid $PEER_UID cannot enter root's home, where the build cache
# and the results are): a copy of the binary, the kubeconfig (readable by that uid only) and a
# home. And the wrapper hack/bench's start_operator runs as the operator.
peer_identity() {
  kubectl apply -n "$NS" -f "$OUT/peer-rbac.yaml" >/dev/null
  local token server
  token="$(kubectl create token "$PEER_SA" -n "$NS" --duration=24h)"
  server="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
  PEER_DIR="$(mktemp -d /tmp/mssql-bench-peer.XXXXXX)"
  chmod 755 "$PEER_DIR"
  cp "$PEER_BIN" "$PEER_DIR/mariadb-operator"
  chmod 755 "$PEER_DIR/mariadb-operator"
  kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d > "$PEER_DIR/ca.crt"
  local kc="$PEER_DIR/kubeconfig"
  KUBECONFIG="$kc" kubectl config set-cluster bench --server="$server" --certificate-authority="$PEER_DIR/ca.crt" --embed-certs >/dev/null
  KUBECONFIG="$kc" kubectl config set-credentials peer --token="$token" >/dev/null
  KUBECONFIG="$kc" kubectl config set-context bench --cluster=bench --user=peer >/dev/null
  KUBECONFIG="$kc" kubectl config use-context bench >/dev/null
  rm -f "$PEER_DIR/ca.crt"
  chmod 600 "$kc"
  chown "$PEER_UID:$PEER_UID" "$kc"
  mkdir -m 700 "$PEER_DIR/home"
  chown "$PEER_UID:$PEER_UID" "$PEER_DIR/home"

  # The wrapper (root's, run by start_operator as `OPERATOR run ARGS`): refuses unless confined,
  # then execs, keeping its PID for the sampler, the peer as uid $PEER_UID with only its own
  # environment.
  local envs=() line
  while IFS= read -r line; do envs+=("$line"); done < "$OUT/peer.env"
  envs+=("KUBECONFIG=$kc" "HOME=$PEER_DIR/home" "PATH=/usr/bin:/bin")
  {
    echo '#!/usr/bin/env bash'
    echo '# Written by hack/bench_peer.sh (peer_identity).'
    echo 'shift  # "run"'
    printf 'for ipt in iptables ip6tables; do\n'
    printf '  [ "$("$ipt" -S OUTPUT | sed -n 2p)" = %q ] ||\n' "-A OUTPUT -j $PEER_CHAIN"
    printf '    { echo "peer wrapper: $ipt OUTPUT does not start with %s; not starting the peer" >&2; exit 1; }\n' "$PEER_CHAIN"
    printf 'done\n'
    printf 'exec setpriv --reuid %s --regid %s --clear-groups env -i' "$PEER_UID" "$PEER_UID"
    printf ' %q' "${envs[@]}" "$PEER_DIR/mariadb-operator"
    printf ' "$@"\n'
  } > "$PEER_DIR/run"
  chmod 700 "$PEER_DIR/run"
}

# --- the scenario -------------------------------------------------------------------------------------
# peer_databases COUNT: MariaDBs named peer-0001..., each like ms-standalone: one replica, TLS
# with its server and client certificates from our Issuer, 1Gi on the plane's StorageClass, 100m
# CPU (see `databases`), a generated root password, no metrics, a ClusterIP Service.
peer_databases() {
  local i
  for i in $(seq -f '%04g' 1 "$1"); do
    cat <<YAML
apiVersion: k8s.mariadb.com/v1alpha1
kind: MariaDB
metadata:
  name: peer-$i
  namespace: $NS
spec:
  replicas: 1
  rootPasswordSecretKeyRef:
    name: peer-$i-root
    key: password
    generate: true
  storage:
    size: 1Gi
    storageClassName: standard
  resources:
    requests: {cpu: 100m}
  metrics:
    enabled: false
  tls:
    enabled: true
    serverCertIssuerRef: {name: mssqlserver-ca-issuer, kind: Issuer, group: cert-manager.io}
    clientCertIssuerRef: {name: mssqlserver-ca-issuer, kind: Issuer, group: cert-manager.io}
---
YAML
  done
}

# peer_wait_ready COUNT: until COUNT MariaDBs have Ready=True, by the watch log (a list every 30 s
# as a fallback, as wait_phase).
peer_wait_ready() {
  local count="$1" start=$SECONDS n=0 last=0 listed
  while :; do
    n="$(count_phase db True)"
    [ "$n" -ge "$count" ] && break
    if [ $((SECONDS - last)) -ge 30 ]; then
      last=$SECONDS
      say "  $n/$count MariaDB Ready after $((SECONDS - start))s"
      listed="$(kubectl get mariadbs.k8s.mariadb.com -n "$NS" \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -cx True || true)"
      [ "$listed" -ge "$count" ] && break
    fi
    [ $((SECONDS - start)) -lt "$TIMEOUT" ] || {
      kubectl get mariadbs.k8s.mariadb.com -n "$NS" >&2 || true
      die "timed out after ${TIMEOUT}s: $n of $count MariaDB Ready (results so far in $SCEN)"
    }
    sleep 0.5
  done
}

peer() { # peer N: the peer with N standalone databases, measured as standalone N is
  local n="$1"
  begin "peer-$n"
  plane "$n"
  printf 'operator=mariadb-operator %s\nuser=system:serviceaccount:%s:%s\nready=True\n' \
    "$PEER_VERSION" "$NS" "$PEER_SA" > "$SCEN/operator.txt"
  kubectl apply --server-side --force-conflicts -f "$PEER_CRDS" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
  peer_identity

  peer_firewall_on || die "could not install the iptables rules that confine the peer; not running it"
  peer_confined || die "the peer's iptables jump is not first in OUTPUT; not running it"
  peer_probe || die "a connect as uid $PEER_UID was not refused by $PEER_CHAIN; not running the peer"
  say "  peer confined: uid $PEER_UID may send to loopback only ($PEER_CHAIN)"

  local metrics health
  metrics="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  health="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  # start_operator as it is (same sampler), with the wrapper as the operator; no metrics port of
  # ours, so nothing asks for our reconcile counter.
  local OPERATOR="$PEER_DIR/run" METRICS_PORT=""
  local RUN_ARGS=(--metrics-addr "127.0.0.1:$metrics" --health-addr "127.0.0.1:$health"
    --kube-api-qps "$PEER_QPS" --kube-api-burst "$PEER_BURST" --log-level info)
  start_operator

  peer_databases "$n" > "$SCEN/databases.yaml"
  watch_log db mariadbs.k8s.mariadb.com '{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}'
  sleep 1
  say "  creating $n MariaDBs (peer)"
  mark create_start
  create "$SCEN/databases.yaml"
  mark created
  peer_wait_ready "$n"
  mark ready
  say "  all $n Ready after $(awk '$1 == "create_start" {s = $2} $1 == "ready" {r = $2} END {printf "%.1f", r - s}' "$SCEN/marks")s"

  # No reconcile counter to wait on: the settle time only.
  say "  settling ${SETTLE}s (no queue to wait on), then idle for ${IDLE}s"
  sleep "$SETTLE"
  mark idle_start
  sleep "$IDLE"
  mark idle_end

  stop_operator
  peer_firewall_off
  stop_jobs
  kubectl get mariadbs.k8s.mariadb.com,certificates,statefulsets -n "$NS" -o json > "$SCEN/objects.json" 2>/dev/null || true
  keep_audit
  rm -rf "$PEER_DIR"
  PEER_DIR=""
}
