#!/usr/bin/env python3
"""Turns the raw results of hack/bench into summary.json, CSV tables, report.md and plot.png.

    bench_report.py RESULTS_DIR [--publish DOCS_DIR]

Inputs per scenario directory (see hack/bench): marks (name epoch), samples.csv (/proc of the
operator once a second), watch-*.log (epoch, then the fields of a `kubectl get -w` line),
audit.log.gz (the API server's audit log; only ServiceAccounts are audited, and the operator is
the only ServiceAccount client), rotate-*.json (a finished rotation request), operator.txt (a peer
operator's scenario, hack/bench --peer: its name, its ServiceAccount's user name, the value of its
Ready field).

Peer scenarios (peer-N) are left out of our sections and compared with standalone-N in a section of
their own, with peer.csv and peer.png.

--publish copies summary.json and the CSV tables into DOCS_DIR/bench-results/ and the plot to
DOCS_DIR/benchmarks.png (the peer's plot, when there is one, to DOCS_DIR/benchmarks-peer.png).
"""

import argparse
import collections
import csv
import gzip
import json
import shutil
import statistics
import sys
from datetime import datetime
from pathlib import Path

OPERATOR_USER = "system:serviceaccount:mssql-bench-system:mssql-operator"
READS = {"get", "list", "watch"}
MIB = 1024.0


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_marks(d):
    marks = {}
    for line in (d / "marks").read_text().splitlines():
        name, value = line.split()
        marks[name] = float(value)
    return marks


def read_samples(d):
    with open(d / "samples.csv") as f:
        return [
            {k: float(v) for k, v in row.items()}
            for row in csv.DictReader(f)
            if row.get("cpu_ticks")
        ]


def read_operator(d):
    """A peer scenario's operator.txt (key=value lines); empty for ours."""
    path = d / "operator.txt"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def read_audit(d, user=OPERATOR_USER):
    """The operator's requests (those of `user`), one per auditID: time received, verb, resource,
    name, code."""
    requests = {}
    with gzip.open(d / "audit.log.gz", "rt") as f:
        for line in f:
            event = json.loads(line)
            if event.get("user", {}).get("username") != user:
                continue
            ref = event.get("objectRef", {})
            resource = ref.get("resource", event.get("requestURI", "?"))
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            request = requests.setdefault(
                event["auditID"],
                {
                    "time": ts(event["requestReceivedTimestamp"]),
                    "verb": event["verb"],
                    "resource": resource,
                    "name": ref.get("name", ""),
                    "code": None,
                    "done": None,
                },
            )
            if event["stage"] == "ResponseComplete":
                request["code"] = event.get("responseStatus", {}).get("code")
                request["done"] = ts(event["stageTimestamp"])
    return sorted(requests.values(), key=lambda r: r["time"])


def read_watch(d, name):
    path = d / f"watch-{name}.log"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            lines.append((float(fields[0]), fields[1:]))
    return lines


def category(request):
    lease = request["resource"].startswith("leases")
    if request["verb"] in READS:
        return "lease read" if lease else "read"
    if lease:
        return "lease write"
    if request["resource"].startswith("events"):
        return "event write"
    return "object write"


def count(requests, start, end):
    """Requests received in [start, end): by category and by (verb, resource)."""
    inside = [r for r in requests if start <= r["time"] < end]
    by_category = collections.Counter(category(r) for r in inside)
    by_kind = collections.Counter((r["verb"], r["resource"]) for r in inside)
    return inside, by_category, by_kind


def sample_at(samples, t):
    """The last sample at or before t (the first one if none)."""
    best = samples[0]
    for s in samples:
        if s["time"] <= t:
            best = s
    return best


def all_reached(watch, phase, count_):
    """The time at which `count_` objects were first in `phase` at once, by the watch log."""
    current = {}
    for t, fields in watch:
        current[fields[0]] = fields[1] if len(fields) > 1 else ""
        if sum(1 for p in current.values() if p == phase) >= count_:
            return t
    return None


def union_length(intervals):
    total, end = 0.0, None
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def rotation(d, i, requests, marks, clk):
    """One rotation of one 3-replica database: total, and the operator's own overhead (see
    docs/benchmarks.md): the total less the union of the intervals in which the operator waits for
    others — cert-manager (its re-issue request until every Certificate is Ready at a new
    revision), each pod (the accepted eviction until the replacement pod is Ready) and the
    disruption controller (a refused eviction until the PodDisruptionBudget allows one)."""
    start, done = marks[f"rotate_{i}_start"], marks[f"rotate_{i}_done"]
    ops = json.loads((d / f"rotate-{i}.json").read_text())
    successful = [t for t, f in read_watch(d, "ops") if f[0] == ops["metadata"]["name"] and f[1:] == ["Successful"]]
    end = min([t for t in successful if t >= start] or [done])
    mine = [r for r in requests if start <= r["time"] <= end]
    waits = []
    reissue = [r["done"] or r["time"] for r in mine if r["verb"] == "patch" and r["resource"] == "certificates/status"]
    certs = read_watch(d, "certs")
    cert_ready = None
    if reissue:
        t0 = max(reissue)
        before = {}
        for t, f in certs:
            if t <= min(reissue) and len(f) >= 2:
                before[f[0]] = f[1]
        ready = {}
        for t, f in certs:
            if t > min(reissue) and len(f) >= 3 and f[2] == "True" and f[1] != before.get(f[0]):
                ready.setdefault(f[0], t)
        if ready and len(ready) >= len(before):
            cert_ready = max(ready.values())
            waits.append(("cert-manager", t0, cert_ready))
    pods = read_watch(d, "pods")
    pdb = read_watch(d, "pdb")
    evictions = [r for r in mine if r["resource"] == "pods/eviction"]
    order = []
    for pod in dict.fromkeys(r["name"] for r in evictions):
        attempts = [r for r in evictions if r["name"] == pod]
        accepted = [r for r in attempts if r["code"] and 200 <= r["code"] < 300]
        refused = [r for r in attempts if r["code"] == 429]
        if not accepted:
            continue
        t_acc = accepted[0]["time"]
        old_uid = None
        for t, f in pods:
            if t <= t_acc and f[0] == pod:
                old_uid = f[1]
        back = [t for t, f in pods if t > t_acc and f[0] == pod and f[1] != old_uid and f[2:] == ["True"]]
        if back:
            waits.append(("pod restart", t_acc, back[0]))
        if refused and refused[0]["time"] < t_acc:
            allowed = [t for t, f in pdb if refused[0]["time"] < t <= t_acc and len(f) > 1 and f[1] not in ("0", "")]
            waits.append(("disruption budget", refused[0]["time"], allowed[0] if allowed else t_acc))
        order.append({"pod": pod, "refused_evictions": len(refused), "evicted_at": round(t_acc - start, 2),
                      "ready_at": round(back[0] - start, 2) if back else None})
    total = end - start
    external = union_length([(a, b) for _, a, b in waits])
    by_kind = collections.defaultdict(float)
    for kind, a, b in waits:
        by_kind[kind] += b - a
    conditions = [
        {"type": c["type"], "status": c["status"], "time": c.get("lastTransitionTime")}
        for c in ops.get("status", {}).get("conditions", [])
    ]
    return {
        "request": ops["metadata"]["name"],
        "total_s": round(total, 2),
        "waiting_s": {k: round(v, 2) for k, v in by_kind.items()},
        "waiting_union_s": round(external, 2),
        "operator_overhead_s": round(total - external, 2),
        "pods": order,
        "operator_requests": len(mine),
        "operator_writes": sum(1 for r in mine if r["verb"] not in READS),
        "requests_by_kind": {f"{v} {res}": n for (v, res), n in collections.Counter((r["verb"], r["resource"]) for r in mine).most_common()},
        "conditions": conditions,
    }


def scenario(d, clk):
    marks = read_marks(d)
    samples = read_samples(d)
    peer = read_operator(d)
    requests = read_audit(d, peer.get("user", OPERATOR_USER))
    db_watch = read_watch(d, "db")
    out = {"name": d.name}
    if peer:
        out["peer"] = peer.get("operator", "?")
    n = len({f[0] for _, f in db_watch})
    out["databases"] = n
    start = marks["operator_started"]
    create = marks["create_start"]
    ready = all_reached(db_watch, peer.get("ready", "Ready"), n) or marks["ready"]
    out["seconds_to_create"] = round(marks["created"] - create, 2)
    out["seconds_to_all_ready"] = round(ready - create, 2)
    base = sample_at(samples, create)
    at_ready = sample_at(samples, ready)
    out["rss_before_create_mib"] = round(base["rss_kib"] / MIB, 1)
    out["peak_rss_to_ready_mib"] = round(at_ready["hwm_kib"] / MIB, 1)
    # The peak of creating N and idling with them (before unrelated objects or rotations).
    out["peak_rss_mib_through_idle"] = round(sample_at(samples, marks.get("idle_end", ready))["hwm_kib"] / MIB, 1)
    out["cpu_seconds_to_ready"] = round((at_ready["cpu_ticks"] - sample_at(samples, start)["cpu_ticks"]) / clk, 2)
    _, cats, kinds = count(requests, start - 1, ready + 1)
    out["requests_to_ready"] = sum(cats.values())
    out["requests_to_ready_by_category"] = dict(cats)
    out["requests_to_ready_by_kind"] = {f"{v} {r}": c for (v, r), c in kinds.most_common()}
    out["requests_to_ready_per_database"] = round(sum(cats.values()) / max(n, 1), 1)

    def window(prefix, a, b):
        minutes = (b - a) / 60
        idle = [s for s in samples if a <= s["time"] <= b]
        _, cats, kinds = count(requests, a, b)
        first, last = sample_at(samples, a), sample_at(samples, b)
        out[prefix] = {
            "seconds": round(b - a, 1),
            "steady_rss_mib": round(statistics.median(s["rss_kib"] for s in idle) / MIB, 1) if idle else None,
            "max_rss_mib": round(max(s["rss_kib"] for s in idle) / MIB, 1) if idle else None,
            "peak_rss_since_start_mib": round(last["hwm_kib"] / MIB, 1),
            "cpu_seconds_per_minute": round((last["cpu_ticks"] - first["cpu_ticks"]) / clk / minutes, 3),
            "per_minute": {k: round(cats.get(k, 0) / minutes, 2) for k in ("read", "object write", "lease read", "lease write", "event write")},
            "by_kind_per_minute": {f"{v} {r}": round(c / minutes, 2) for (v, r), c in kinds.most_common()},
        }

    if "queue_empty" in marks:
        # What was queued while databases waited, run after all were Ready.
        out["seconds_ready_to_queue_empty"] = round(max(marks["queue_empty"] - ready, 0), 1)
        out["reconciles_after_ready"] = int(marks["reconciles_at_queue_empty"] - marks["reconciles_at_ready"])
        _, cats, _ = count(requests, ready, marks["queue_empty"])
        out["requests_ready_to_queue_empty"] = sum(cats.values())
    if "idle_start" in marks:
        window("idle", marks["idle_start"], marks["idle_end"])
    if "unrelated_idle_start" in marks:
        window("unrelated_idle", marks["unrelated_idle_start"], marks["unrelated_idle_end"])
        out["unrelated_objects"] = {"seconds_to_create": round(marks["unrelated_created"] - marks["unrelated_start"], 1)}
        _, cats, _ = count(requests, marks["unrelated_start"], marks["unrelated_idle_end"])
        out["unrelated_objects"]["operator_requests_meanwhile"] = sum(cats.values())
    if "rotations_start" in marks:
        a = marks["rotations_start"]
        ops = read_watch(d, "ops")
        m = len({f[0] for _, f in ops})
        b = all_reached(ops, "Successful", m) or marks["rotations_done"]
        first_seen, succeeded = {}, {}
        for t, f in ops:
            first_seen.setdefault(f[0], t)
            if f[1:] == ["Successful"]:
                succeeded.setdefault(f[0], t)
        each = sorted(succeeded[k] - first_seen[k] for k in succeeded)
        _, cats, kinds = count(requests, a, b)
        s_a, s_b = sample_at(samples, a), sample_at(samples, b)
        out["rotations"] = {
            "requests": m,
            "seconds_to_all_successful": round(b - a, 2),
            "each_seconds_median": round(statistics.median(each), 2) if each else None,
            "each_seconds_max": round(max(each), 2) if each else None,
            "operator_requests": sum(cats.values()),
            "operator_requests_by_category": dict(cats),
            "operator_requests_by_kind": {f"{v} {r}": c for (v, r), c in kinds.most_common(15)},
            "cpu_seconds": round((s_b["cpu_ticks"] - s_a["cpu_ticks"]) / clk, 2),
            "peak_rss_mib": round(s_b["hwm_kib"] / MIB, 1),
        }
    repeats = sorted(int(k.split("_")[1]) for k in marks if k.startswith("rotate_") and k.endswith("_done"))
    if repeats:
        out["single_rotation"] = [rotation(d, i, requests, marks, clk) for i in repeats]
    out["requests_total"] = len(requests)
    out["forbidden"] = sum(1 for r in requests if r["code"] == 403)
    if out["forbidden"]:
        refused = collections.Counter((r["verb"], r["resource"]) for r in requests if r["code"] == 403)
        out["forbidden_by_kind"] = {f"{v} {res}": c for (v, res), c in refused.most_common()}
    if peer:
        out["certificate_keys"] = certificate_keys(d)
    out["peak_rss_mib"] = round(max(s["hwm_kib"] for s in samples) / MIB, 1)
    out["cpu_seconds_total"] = round((samples[-1]["cpu_ticks"] - samples[0]["cpu_ticks"]) / clk, 2)
    return out


def certificate_keys(d):
    """The private key types of the Certificates in objects.json (kept by a peer scenario)."""
    try:
        items = json.loads((d / "objects.json").read_text()).get("items", [])
    except (OSError, ValueError):
        return []
    keys = collections.Counter()
    for item in items:
        if item.get("kind") == "Certificate":
            key = item.get("spec", {}).get("privateKey") or {}
            keys[f"{key.get('algorithm', 'RSA (default)')} {key.get('size', '')}".strip()] += 1
    return [f"{k} ({c})" for k, c in keys.most_common()]


def machine(root):
    info = {}
    for line in (root / "machine.txt").read_text().splitlines():
        key, _, value = line.partition("=")
        info[key] = value
    return info


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value):
    return "–" if value is None else value


def report(root, info, results):
    peers = [r for r in results if r.get("peer")]
    results = [r for r in results if not r.get("peer")]
    out = [f"# Benchmark results ({root.name})", ""]
    out += [
        f"- command: `{info['command']}`",
        f"- operator commit: `{info['commit']}`" + (" (with uncommitted changes)" if info.get("dirty", "0") != "0" else ""),
        f"- operator RBAC: {info.get('rbac', '?')}; requests refused with 403 in all scenarios: {sum(r['forbidden'] for r in results)}",
        f"- machine: {info['cores']} cores ({info['cpu']}), {int(info['mem_kib']) // 1024 // 1024 + 1} GiB RAM, Linux {info['kernel']}",
        "",
        "## Scale",
        "",
    ]
    rows = []
    for r in results:
        idle = r.get("idle", {})
        pm = idle.get("per_minute", {})
        rows.append([
            r["name"], r["databases"], r["seconds_to_all_ready"], r["rss_before_create_mib"], r["peak_rss_mib_through_idle"],
            fmt(idle.get("steady_rss_mib")), r["cpu_seconds_to_ready"], r["requests_to_ready"], r["requests_to_ready_per_database"],
            fmt(pm.get("read")), fmt(pm.get("object write")), fmt(pm.get("lease read")), fmt(pm.get("lease write")),
            fmt(pm.get("event write")),
            fmt(idle.get("cpu_seconds_per_minute")),
        ])
    out.append(table(rows, [
        "scenario", "databases", "s to all Ready", "RSS before (MiB)", "peak RSS (MiB)", "steady RSS idle (MiB)",
        "CPU s to Ready", "requests to Ready", "per database", "reads/idle min (not Lease)", "object writes/idle min",
        "Lease reads/idle min", "Lease writes/idle min", "Event writes/idle min", "CPU s/idle min",
    ]))
    drained = [r for r in results if "seconds_ready_to_queue_empty" in r]
    if drained:
        out += ["", "After all were Ready, what was queued while they waited ran until the queue was empty "
                "(no reconcile for 5 s); the idle window starts after that:", ""]
        out.append(table(
            [[r["name"], r["seconds_ready_to_queue_empty"], r["reconciles_after_ready"], r["requests_ready_to_queue_empty"]]
             for r in drained],
            ["scenario", "s from all Ready to an empty queue", "reconciles in that time", "requests in that time"],
        ))
    for r in results:
        out += ["", f"### {r['name']}: requests to Ready by verb and resource", ""]
        out.append(table(list(r["requests_to_ready_by_kind"].items()), ["request", "count"]))
        if r.get("idle", {}).get("by_kind_per_minute"):
            out += ["", f"### {r['name']}: requests per idle minute", ""]
            out.append(table(list(r["idle"]["by_kind_per_minute"].items()), ["request", "per minute"]))
    unrelated = [r for r in results if "unrelated_idle" in r]
    if unrelated:
        out += ["", "## Unrelated objects", ""]
        rows = []
        for r in unrelated:
            a, b = r["idle"], r["unrelated_idle"]
            rows.append([r["name"], a["steady_rss_mib"], b["steady_rss_mib"], round(b["steady_rss_mib"] - a["steady_rss_mib"], 1),
                         a["per_minute"]["read"], b["per_minute"]["read"], r["unrelated_objects"]["operator_requests_meanwhile"],
                         b["cpu_seconds_per_minute"]])
        out.append(table(rows, ["scenario", "steady RSS before (MiB)", "steady RSS after (MiB)", "difference (MiB)",
                                "reads/min before", "reads/min after", "operator requests while they were created and after",
                                "CPU s/min after"]))
    rotations = [r for r in results if "rotations" in r]
    if rotations:
        out += ["", "## Concurrent rotations", ""]
        rows = [[r["name"], x["requests"], x["seconds_to_all_successful"], x["each_seconds_median"], x["each_seconds_max"],
                 x["operator_requests"], x["operator_requests_by_category"].get("object write", 0), x["cpu_seconds"], x["peak_rss_mib"]]
                for r in rotations for x in [r["rotations"]]]
        out.append(table(rows, ["scenario", "requests", "s until all Successful", "each: median s", "each: max s",
                                "operator requests", "object writes", "CPU s", "peak RSS (MiB)"]))
        for r in rotations:
            out += ["", f"### {r['name']}: operator requests during the rotations (top 15)", ""]
            out.append(table(list(r["rotations"]["operator_requests_by_kind"].items()), ["request", "count"]))
    singles = [(r["name"], x) for r in results for x in r.get("single_rotation", [])]
    if singles:
        out += ["", "## One rotation of a 3-replica database", ""]
        rows = [[name, x["request"], x["total_s"], x["waiting_s"].get("cert-manager", 0), x["waiting_s"].get("pod restart", 0),
                 x["waiting_s"].get("disruption budget", 0), x["waiting_union_s"], x["operator_overhead_s"],
                 x["operator_requests"], x["operator_writes"]] for name, x in singles]
        out.append(table(rows, ["scenario", "request", "total s", "cert-manager s", "pod restarts s", "disruption budget s",
                                "waiting (union) s", "operator overhead s", "operator requests", "operator writes"]))
        for name, x in singles:
            out += ["", f"Pods of {x['request']}: " + ", ".join(
                f"{p['pod']} evicted at +{p['evicted_at']}s ({p['refused_evictions']} refused before), Ready at +{p['ready_at']}s" for p in x["pods"])]
    if peers:
        out += peer_report(info, results, peers)
    return "\n".join(out) + "\n"


def per_minute(r, *kinds):
    return round(sum(r.get("idle", {}).get("per_minute", {}).get(k, 0) for k in kinds), 2) if "idle" in r else None


def per_database(r, *kinds):
    cats = r["requests_to_ready_by_category"]
    return round(sum(cats.get(k, 0) for k in kinds) / max(r["databases"], 1), 1)


# The figures compared, (label, function of a scenario): up to all Ready, then in the idle window.
TO_READY = [
    ("s to all Ready (from the first create)", lambda r: r["seconds_to_all_ready"]),
    ("RSS before create (MiB)", lambda r: r["rss_before_create_mib"]),
    ("peak RSS to all Ready (MiB, VmHWM)", lambda r: r["peak_rss_to_ready_mib"]),
    ("CPU s to all Ready (from its start)", lambda r: r["cpu_seconds_to_ready"]),
    ("requests to all Ready, per database", lambda r: r["requests_to_ready_per_database"]),
    ("  reads (get, list, watch; not Lease) per database", lambda r: per_database(r, "read")),
    ("  object writes per database", lambda r: per_database(r, "object write")),
    ("  Event writes per database", lambda r: per_database(r, "event write")),
    ("  Lease requests per database", lambda r: per_database(r, "lease read", "lease write")),
    ("requests refused (403), whole scenario", lambda r: r["forbidden"]),
]
IDLE = [
    ("steady RSS idle (MiB, median)", lambda r: r.get("idle", {}).get("steady_rss_mib")),
    ("peak RSS through idle (MiB, VmHWM)", lambda r: r["peak_rss_mib_through_idle"]),
    ("CPU s per idle minute", lambda r: r.get("idle", {}).get("cpu_seconds_per_minute")),
    ("reads per idle minute (not Lease)", lambda r: per_minute(r, "read")),
    ("object writes per idle minute", lambda r: per_minute(r, "object write")),
    ("Event writes per idle minute", lambda r: per_minute(r, "event write")),
    ("Lease requests per idle minute", lambda r: per_minute(r, "lease read", "lease write")),
]


def ratio(ours, peer):
    if ours is None or peer is None:
        return "–"
    if ours == 0:
        return "–" if peer == 0 else "∞"
    return f"{peer / ours:.2f}"


def pairs(results, peers):
    """(N, ours, peer) for each N with both standalone-N and peer-N."""
    ours = {r["databases"]: r for r in results if r["name"].startswith("standalone-")}
    return [(p["databases"], ours[p["databases"]], p) for p in sorted(peers, key=lambda p: p["databases"]) if p["databases"] in ours]


def peer_report(info, results, peers):
    name = peers[0]["peer"]
    out = ["", f"## Peer: {name}", ""]
    out += [
        f"- built by hack/peer/build; identity: {info.get('peer_rbac', '?')}, a TokenRequest token in a kubeconfig of its own "
        f"(ours: {info.get('rbac', '?')}); client-side limit: {info.get('peer_client_limit', '?')} (ours has none)",
        "- same plane, namespace, CA and Issuer as ours; each MariaDB as ms-standalone: one replica, TLS with server and client "
        "certificates from that Issuer, 1Gi, 100m CPU; no metrics, no webhook, no leader election (its chart's default)",
        f"- its Certificates' keys: {', '.join(sorted({k for p in peers for k in p.get('certificate_keys', [])})) or '?'}, fixed by "
        "the peer (its MariaDB has no key setting); ours set no algorithm, so cert-manager's default, RSA 2048",
        "- Ready: its MariaDB's Ready condition True (its StatefulSet's replicas ready); ours: phase Ready",
        "- object writes are every create, update, patch and delete: the audit log is at level Metadata (no request or "
        "response bodies, so no resourceVersions), which cannot tell a write that changed an object from a no-op one",
        f"- requests refused with 403 in the peer's scenarios: {sum(p['forbidden'] for p in peers)}",
    ]
    rows = []
    for n, a, b in pairs(results, peers):
        out += ["", f"### {n} databases: up to all Ready", ""]
        out.append(table([[label, fmt(f(a)), fmt(f(b)), ratio(f(a), f(b))] for label, f in TO_READY],
                         ["figure", f"ours ({a['name']})", f"peer ({b['name']})", "peer/ours"]))
        rows.append((n, a, b))
    if rows:
        out += ["", "### Idle (the peer's figures are an artefact of fake pods)", "",
                "On kwok's fake pods nothing listens at a database's address: after Ready the peer's SQL reconcilers "
                "(its mariadb.sys User and Grant) cannot connect and requeue, each time patching status and reading again. "
                "Its idle figures measure that retry loop, not what it does with real databases. Ours waits until its "
                "reconcile queue is empty before the settle time; the peer has no such counter, so its idle window "
                "starts after the settle time only.", ""]
        table_rows = []
        for n, a, b in rows:
            table_rows += [[n, label, fmt(f(a)), fmt(f(b)), ratio(f(a), f(b))] for label, f in IDLE]
        out.append(table(table_rows, ["databases", "figure", "ours", "peer (fake-pod artefact)", "peer/ours"]))
    for p in peers:
        out += ["", f"### {p['name']}: requests to Ready by verb and resource", ""]
        out.append(table(list(p["requests_to_ready_by_kind"].items()), ["request", "count"]))
        if p.get("idle", {}).get("by_kind_per_minute"):
            out += ["", f"### {p['name']}: requests per idle minute (fake-pod artefact)", ""]
            out.append(table(list(p["idle"]["by_kind_per_minute"].items()), ["request", "per minute"]))
        if p.get("forbidden_by_kind"):
            out += ["", f"### {p['name']}: requests refused (403)", ""]
            out.append(table(list(p["forbidden_by_kind"].items()), ["request", "count"]))
    return out


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    standalone = sorted((r for r in results if r["name"].startswith("standalone-")), key=lambda r: r["databases"])
    groups = [r for r in results if r["name"].startswith("ag-")]
    fig, (mem, api) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r["databases"] for r in standalone]
    mem.plot(xs, [r["peak_rss_mib_through_idle"] for r in standalone], "o-", label="peak RSS (VmHWM), create + idle")
    mem.plot(xs, [r.get("idle", {}).get("steady_rss_mib") for r in standalone], "s-", label="steady RSS, idle")
    for r in groups:
        mem.plot([r["databases"]], [r["peak_rss_mib_through_idle"]], "^", color="C0", label=f"peak, {r['databases']} groups x3")
        mem.plot([r["databases"]], [r.get("idle", {}).get("steady_rss_mib")], "v", color="C1", label=f"steady, {r['databases']} groups x3")
    mem.axhline(64, color="grey", linestyle="--", linewidth=1, label="target: 64 MiB steady at 1,000")
    mem.set_xscale("log")
    mem.set_xlabel("databases (N)")
    mem.set_ylabel("MiB")
    mem.set_title("operator resident memory")
    mem.legend(fontsize=8)
    api.plot(xs, [r["requests_to_ready"] for r in standalone], "o-", label="requests to all Ready")
    def idle(r, *kinds):  # per idle minute, a zero drawn at 0.1 on the log scale
        return max(sum(r.get("idle", {}).get("per_minute", {}).get(k, 0) for k in kinds), 0.1)

    api.plot(xs, [idle(r, "read") for r in standalone], "s-", label="reads per idle minute, not Lease (0 at 0.1)")
    api.plot(xs, [idle(r, "object write") for r in standalone], "x--", label="object writes per idle minute (0 at 0.1)")
    api.plot(xs, [idle(r, "lease read", "lease write") for r in standalone], "d:", label="Lease requests per idle minute")
    for r in groups:
        api.plot([r["databases"]], [r["requests_to_ready"]], "^", color="C0", label=f"to Ready, {r['databases']} groups x3")
    api.set_xscale("log")
    api.set_yscale("log")
    api.set_xlabel("databases (N)")
    api.set_ylabel("API requests")
    api.set_title("API requests by the operator")
    api.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_peer(results, peers, path):
    """Ours and the peer side by side, for each N with both: bars of the figures up to all Ready,
    and (hatched) the steady idle RSS, whose peer value is a fake-pod artefact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = pairs(results, peers)
    panels = [
        ("s to all Ready", lambda r: r["seconds_to_all_ready"]),
        ("peak RSS to all Ready (MiB)", lambda r: r["peak_rss_to_ready_mib"]),
        ("CPU s to all Ready", lambda r: r["cpu_seconds_to_ready"]),
        ("requests per database to all Ready", lambda r: r["requests_to_ready_per_database"]),
        ("steady RSS idle (MiB; peer: fake-pod artefact)", lambda r: r.get("idle", {}).get("steady_rss_mib") or 0),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.8))
    xs = range(len(both))
    width = 0.38
    for ax, (title, f) in zip(axes, panels):
        idle = "idle" in title
        ax.bar([x - width / 2 for x in xs], [f(a) for _, a, _ in both], width, label="mssql-operator", color="C0")
        ax.bar([x + width / 2 for x in xs], [f(b) for _, _, b in both], width, label=peers[0]["peer"], color="C1",
               hatch="//" if idle else None)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"N={n}" for n, _, _ in both])
        ax.set_title(title, fontsize=9)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--publish", metavar="DOCS_DIR")
    args = parser.parse_args()
    root = Path(args.results)
    info = machine(root)
    clk = float(info.get("clk_tck", 100))
    results = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "marks").exists()):
        try:
            results.append(scenario(d, clk))
        except (KeyError, ValueError, IndexError, FileNotFoundError) as error:
            print(f"bench_report: {d.name} is incomplete ({error!r}); left out", file=sys.stderr)
    results.sort(key=lambda r: (not r["name"].startswith("standalone-"), r["name"].split("-")[0], r["databases"]))
    (root / "summary.json").write_text(json.dumps({"machine": info, "scenarios": results}, indent=1) + "\n")
    peers = [r for r in results if r.get("peer")]
    ours = [r for r in results if not r.get("peer")]
    with open(root / "scale.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "databases", "seconds_to_all_ready", "peak_rss_mib", "steady_rss_idle_mib",
                    "cpu_seconds_to_ready", "requests_to_ready", "reads_per_idle_minute", "object_writes_per_idle_minute",
                    "lease_writes_per_idle_minute", "event_writes_per_idle_minute"])
        for r in ours:
            pm = r.get("idle", {}).get("per_minute", {})
            w.writerow([r["name"], r["databases"], r["seconds_to_all_ready"], r["peak_rss_mib_through_idle"],
                        r.get("idle", {}).get("steady_rss_mib"), r["cpu_seconds_to_ready"], r["requests_to_ready"],
                        pm.get("read"), pm.get("object write"), pm.get("lease write"), pm.get("event write")])
    (root / "report.md").write_text(report(root, info, results))
    plot(results, root / "plot.png")
    published = ["summary.json", "scale.csv", "report.md"]
    if pairs(ours, peers):
        with open(root / "peer.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["databases", "figure", "ours", "peer", "peer_over_ours", "peer_fake_pod_artefact"])
            for n, a, b in pairs(ours, peers):
                for figures, artefact in ((TO_READY, False), (IDLE, True)):
                    for label, fn in figures:
                        w.writerow([n, label.strip(), fn(a), fn(b), ratio(fn(a), fn(b)), artefact])
        plot_peer(ours, peers, root / "peer.png")
        published.append("peer.csv")
    print((root / "report.md").read_text())
    if args.publish:
        docs = Path(args.publish)
        (docs / "bench-results").mkdir(parents=True, exist_ok=True)
        for name in published:
            shutil.copy(root / name, docs / "bench-results" / name)
        shutil.copy(root / "plot.png", docs / "benchmarks.png")
        if (root / "peer.png").exists() and "peer.csv" in published:
            shutil.copy(root / "peer.png", docs / "benchmarks-peer.png")
        print(f"published to {docs}/bench-results/ and {docs}/benchmarks.png", file=sys.stderr)


if __name__ == "__main__":
    main()
