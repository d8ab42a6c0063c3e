#!/usr/bin/env python3
"""Turns the raw results of hack/bench into summary.json, CSV tables, report.md and plot.png.

    bench_report.py RESULTS_DIR [--publish DOCS_DIR]

Inputs per scenario directory (see hack/bench): marks (name epoch), samples.csv (/proc of the
operator once a second), watch-*.log (epoch, then the fields of a `kubectl get -w` line),
audit.log.gz (the API server's audit log; only ServiceAccounts are audited, and the operator is
the only ServiceAccount client), rotate-*.json (a finished rotation request).

--publish copies summary.json and the CSV tables into DOCS_DIR/bench-results/ and the plot to
DOCS_DIR/benchmarks.png.
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


def read_audit(d):
    """The operator's requests, one per auditID: time received, verb, resource, name, code."""
    requests = {}
    with gzip.open(d / "audit.log.gz", "rt") as f:
        for line in f:
            event = json.loads(line)
            if event.get("user", {}).get("username") != OPERATOR_USER:
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
    requests = read_audit(d)
    db_watch = read_watch(d, "db")
    out = {"name": d.name}
    n = len({f[0] for _, f in db_watch})
    out["databases"] = n
    start = marks["operator_started"]
    create = marks["create_start"]
    ready = all_reached(db_watch, "Ready", n) or marks["ready"]
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
    out["peak_rss_mib"] = round(max(s["hwm_kib"] for s in samples) / MIB, 1)
    out["cpu_seconds_total"] = round((samples[-1]["cpu_ticks"] - samples[0]["cpu_ticks"]) / clk, 2)
    return out


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
    return "\n".join(out) + "\n"


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
    with open(root / "scale.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "databases", "seconds_to_all_ready", "peak_rss_mib", "steady_rss_idle_mib",
                    "cpu_seconds_to_ready", "requests_to_ready", "reads_per_idle_minute", "object_writes_per_idle_minute",
                    "lease_writes_per_idle_minute", "event_writes_per_idle_minute"])
        for r in results:
            pm = r.get("idle", {}).get("per_minute", {})
            w.writerow([r["name"], r["databases"], r["seconds_to_all_ready"], r["peak_rss_mib_through_idle"],
                        r.get("idle", {}).get("steady_rss_mib"), r["cpu_seconds_to_ready"], r["requests_to_ready"],
                        pm.get("read"), pm.get("object write"), pm.get("lease write"), pm.get("event write")])
    (root / "report.md").write_text(report(root, info, results))
    plot(results, root / "plot.png")
    print((root / "report.md").read_text())
    if args.publish:
        docs = Path(args.publish)
        (docs / "bench-results").mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "scale.csv", "report.md"):
            shutil.copy(root / name, docs / "bench-results" / name)
        shutil.copy(root / "plot.png", docs / "benchmarks.png")
        print(f"published to {docs}/bench-results/ and {docs}/benchmarks.png", file=sys.stderr)


if __name__ == "__main__":
    main()
