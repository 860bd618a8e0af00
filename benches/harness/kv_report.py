#!/usr/bin/python3
"""Summarise kv_bench.py results: medians, Keelson/etcd ratios, targets, an
SVG plot of throughput against connection count, and the
"## kv: Keelson vs etcd 3.4.23 (v2 API)" section of BENCHMARKS.md (other
sections of that file are kept as they are). Standard library only.

  kv_report.py --results benches/results --doc BENCHMARKS.md
  kv_report.py --results benches/results --only benches/results/kv-quick.json
"""

import argparse
import json
import math
import os
import re
import statistics
import sys

HEADING = "## kv: Keelson vs etcd 3.4.23 (v2 API)"
PLOT = "kv-throughput-vs-connections.svg"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def fmt_ms(us):
    return "n/a" if us is None else f"{us / 1000:.2f} ms"


def fmt_rps(x):
    return "n/a" if x is None else f"{x:,.0f}"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def workload(res, label, key):
    """Median over rounds of one workload: rps, p50, p99 and the per-round values."""
    runs = [rnd[label][key] for rnd in res["rounds"] if label in rnd]
    return {
        "rps": med(r["rps"] for r in runs),
        "p50": med(r["latency_us"]["p50"] for r in runs),
        "p99": med(r["latency_us"]["p99"] for r in runs),
        "rounds_rps": [r["rps"] for r in runs],
        "server_cpu": med(r.get("server_cpu") for r in runs),
        "wrk_cpu": med(r.get("wrk_cpu") for r in runs),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
    }


def sweep(res, label, kind):
    conns = sorted({int(c) for rnd in res["rounds"] for c in rnd[label][kind]})
    return {c: workload({"rounds": [{label: rnd[label][kind]} for rnd in res["rounds"]]}, label, str(c))
            for c in conns}


def throughput_summary(res):
    a, b = res["labels"]
    s = {"labels": (a, b), "workloads": {}, "sweep": {}}
    for key in ("write", "read", "write_c1"):
        s["workloads"][key] = (workload(res, a, key), workload(res, b, key))
    for kind in ("sweep_write", "sweep_read"):
        s["sweep"][kind] = (sweep(res, a, kind), sweep(res, b, kind))
    return s


def svg_plot(s, path):
    """Two panels (writes, reads): req/s against connections, log2 x axis."""
    a, b = s["labels"]
    colours = {a: "#1f77b4", b: "#d62728"}
    W, H, pad_l, pad_r, pad_t, pad_b = 460, 340, 70, 20, 40, 50
    panels = [("sweep_write", "v2 writes (PUT, 256 B values)"), ("sweep_read", "v2 reads (GET)")]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 30}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{2 * W}" height="{H + 30}" fill="white"/>']
    for i, (kind, title) in enumerate(panels):
        ox = i * W
        sa, sb = s["sweep"][kind]
        conns = sorted(set(sa) | set(sb))
        ymax = max([v["rps"] or 0 for v in list(sa.values()) + list(sb.values())] + [1])
        step = 10 ** (math.floor(math.log10(ymax)) - 1)
        for m in (1, 2, 2.5, 5, 10):
            if ymax / (step * m) <= 6:
                step *= m
                break
        ytop = math.ceil(ymax / step) * step
        pw, ph = W - pad_l - pad_r, H - pad_t - pad_b
        lo, hi = math.log2(conns[0]), math.log2(conns[-1])

        def X(c):
            return ox + pad_l + (0 if hi == lo else (math.log2(c) - lo) / (hi - lo) * pw)

        def Y(v):
            return pad_t + ph - v / ytop * ph

        out.append(f'<text x="{ox + W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>')
        y = 0
        while y <= ytop + 1e-9:
            out.append(f'<line x1="{ox + pad_l}" x2="{ox + pad_l + pw}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{ox + pad_l - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>')
            y += step
        for c in conns:
            out.append(f'<line x1="{X(c):.1f}" x2="{X(c):.1f}" y1="{pad_t}" y2="{pad_t + ph}" stroke="#eee"/>')
            out.append(f'<text x="{X(c):.1f}" y="{pad_t + ph + 16}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{ox + pad_l + pw / 2}" y="{H - 8}" text-anchor="middle">connections (wrk -t1, log scale)</text>')
        out.append(f'<text x="{ox + 16}" y="{pad_t + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {ox + 16} {pad_t + ph / 2})">req/s (median of rounds)</text>')
        for label, series in ((a, sa), (b, sb)):
            pts = [(X(c), Y(series[c]["rps"])) for c in sorted(series) if series[c]["rps"] is not None]
            out.append('<polyline fill="none" stroke-width="2" stroke="{}" points="{}"/>'.format(
                colours[label], " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
            for x, y in pts:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colours[label]}"/>')
    for j, label in enumerate((a, b)):
        lx = 2 * W / 2 - 120 + j * 140
        out.append(f'<rect x="{lx}" y="{H + 10}" width="14" height="4" fill="{colours[label]}"/>')
        out.append(f'<text x="{lx + 20}" y="{H + 16}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def all_loads(res):
    vals = [res.get("load_start")]
    for rnd in res.get("rounds", []):
        for v in rnd.values():
            vals += [v.get("load_before"), v.get("load_after")]
    for v in (res.get("memory") or {}).values():
        vals += [v.get("load_before"), v.get("load_after")]
    vals.append(res.get("load_end"))
    return [v for v in vals if v]


def loads_line(res):
    ones = [v[0] for v in all_loads(res)]
    return (f"1-minute load average {res['load_start'][0]:.2f} at start, {res['load_end'][0]:.2f} at end, "
            f"{min(ones):.2f}-{max(ones):.2f} across the before/after samples of each server run")


def header_lines(res):
    m = res["machine"]
    v = res["versions"]
    lines = [
        f"- Command: `{res['command']}` (from the repository root), {res['date']}",
        f"- Machine: `nproc` = {m['nproc']}, kernel {m['kernel']}, {m['cpu_model']}, "
        f"{(m['mem_total_kb'] or 0) / 1048576:.0f} GiB RAM; server pinned with `taskset -c 0`, "
        f"wrk {v.get('wrk', '?')} (`-t1`) with `taskset -c 1`",
        f"- Versions: {v.get('etcd', '?')} (`--enable-v2=true`)" +
        (f"; keelson: {v['keelson']}" if "keelson" in v else "") +
        (f", binary built {v['keelson_binary_mtime']}" if "keelson_binary_mtime" in v else ""),
        f"- Load: {loads_line(res)}",
    ]
    ones = [x[0] for x in all_loads(res)]
    if ones and max(ones) > 1.5 * m["nproc"] / 2:
        cpus = [r.get("server_cpu") for rnd in res.get("rounds", []) for per in rnd.values()
                for r in [per.get("write"), per.get("read"), per.get("write_c1")] if r]
        cpus = [c for c in cpus if c is not None]
        busy = (f"; under load the servers averaged only {min(cpus):.2f}-{max(cpus):.2f} of their core"
                if cpus else "")
        lines.append(f"- **Busy machine**: other builds were running (load average up to {max(ones):.2f} on "
                     f"{m['nproc']} cores){busy}. " + ("Both servers shared that handicap in interleaved runs, but "
                     if res.get("kind") != "memory" else "The two servers ran one after the other, so the "
                     "handicap may differ between them; ") + "absolute figures are low and noisy; re-run on an "
                     "idle machine before drawing fine conclusions.")
    if res.get("etcd_only"):
        lines.append("- NOTE: `--etcd-only` run: both slots are etcd (harness check), not Keelson.")
    return lines


def throughput_section(res, plot_rel):
    s = throughput_summary(res)
    a, b = s["labels"]
    p = res["params"]
    L = []
    L.append(f"### Throughput and latency\n")
    L += header_lines(res)
    L.append(f"- Method: {p['rounds']} rounds, each starting a fresh {a} then a fresh {b} "
             f"(new temp data dir, 127.0.0.1); every wrk run lasts {p['duration']} s; figures are the "
             f"median of the rounds. Writes: `PUT /v2/keys/bench/<n>` with form body `value=<{p['value_size']} bytes>`, "
             f"n uniform over {p['keys']:,} names. Reads: `GET` of those {p['keys']:,} keys, all populated first. "
             f"Ratios are {b}/{a}: above 1 is better for req/s, below 1 is better for latency.")
    L.append("")
    L.append(f"| workload | {a} req/s | {b} req/s | req/s ratio | {a} p50 | {b} p50 | p50 ratio | {a} p99 | {b} p99 | p99 ratio |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"write": "writes, 64 connections", "read": "reads, 64 connections",
             "write_c1": "writes, 1 connection (`-c1 -t1`)"}
    for key, name in names.items():
        x, y = s["workloads"][key]
        L.append(f"| {name} | {fmt_rps(x['rps'])} | {fmt_rps(y['rps'])} | {fmt_ratio(ratio(y['rps'], x['rps']))} "
                 f"| {fmt_ms(x['p50'])} | {fmt_ms(y['p50'])} | {fmt_ratio(ratio(y['p50'], x['p50']))} "
                 f"| {fmt_ms(x['p99'])} | {fmt_ms(y['p99'])} | {fmt_ratio(ratio(y['p99'], x['p99']))} |")
    L.append("")
    L.append("Per-round req/s, and CPU use during the run (1.00 = one core busy; wrk near 1.00 means the "
             "load generator, not the server, was the limit):")
    L.append("")
    L.append(f"| workload | {a} rounds | {b} rounds | {a} server CPU | {b} server CPU | wrk CPU ({a} / {b}) | non-2xx + socket errors |")
    L.append("|---|---|---|---:|---:|---:|---:|")
    for key, name in names.items():
        x, y = s["workloads"][key]
        L.append(f"| {name} | {' / '.join(fmt_rps(r) for r in x['rounds_rps'])} | "
                 f"{' / '.join(fmt_rps(r) for r in y['rounds_rps'])} | {x['server_cpu']:.2f} | {y['server_cpu']:.2f} | "
                 f"{x['wrk_cpu']:.2f} / {y['wrk_cpu']:.2f} | {x['errors']} / {y['errors']} |")
    L.append("")
    L.append("#### Throughput against connection count\n")
    L.append(f"| connections | {a} write req/s | {b} write req/s | write ratio | {a} read req/s | {b} read req/s | read ratio | {b} write p99 / {a} | {b} read p99 / {a} |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    wa, wb = s["sweep"]["sweep_write"]
    ra, rb = s["sweep"]["sweep_read"]
    for c in sorted(set(wa) | set(ra)):
        g = lambda d: d.get(c, {})
        L.append(f"| {c} | {fmt_rps(g(wa).get('rps'))} | {fmt_rps(g(wb).get('rps'))} | "
                 f"{fmt_ratio(ratio(g(wb).get('rps'), g(wa).get('rps')))} | {fmt_rps(g(ra).get('rps'))} | "
                 f"{fmt_rps(g(rb).get('rps'))} | {fmt_ratio(ratio(g(rb).get('rps'), g(ra).get('rps')))} | "
                 f"{fmt_ratio(ratio(g(wb).get('p99'), g(wa).get('p99')))} | {fmt_ratio(ratio(g(rb).get('p99'), g(ra).get('p99')))} |")
    if plot_rel:
        L.append("")
        L.append(f"![req/s against connections]({plot_rel})")
    return L, s


def memory_section(res):
    a, b = res["labels"]
    ma, mb = res["memory"].get(a, {}), res["memory"].get(b, {})
    L = ["### Memory and restart with 1M keys\n"]
    L += header_lines(res)
    p = res["params"]
    n, vs = p["mem_keys"], p["mem_value_size"]
    raw = ma.get("raw_bytes") or mb.get("raw_bytes")
    L.append(f"- Method: a fresh server loads {n:,} keys `/mem/0000000`..`/mem/{n - 1:07d}` with {vs}-byte values "
             f"(wrk, {p.get('mem_connections', 64)} connections, each key PUT once); raw data = sum of key + value "
             f"bytes = {raw:,} B ({raw / 1e6:.0f} MB). VmRSS is read from /proc/PID/status {p['settle']:g} s "
             f"after the load. Restart: SIGTERM, then start on the same data dir and time from process start "
             f"until `GET` of the last key answers 200; {p['restarts']} restarts, median.")
    for label, m in ((a, ma), (b, mb)):
        if m.get("error"):
            L.append(f"- **{label} failed**: {m['error']}")
    L.append("")
    L.append(f"| figure | {a} | {b} | ratio {b}/{a} |")
    L.append("|---|---:|---:|---:|")

    def row(name, key, f):
        fa, fb = key(ma), key(mb)
        show = lambda x: "n/a" if x is None else f(x)
        L.append(f"| {name} | {show(fa)} | {show(fb)} | {fmt_ratio(ratio(fb, fa))} |")

    mib = lambda kb: f"{kb / 1024:,.0f} MiB"
    row("VmRSS after loading", lambda m: m.get("rss_kb_loaded"), mib)
    row("VmRSS / raw data", lambda m: m.get("rss_over_raw_loaded"), lambda x: f"{x:.2f}x")
    row("VmHWM (peak) during load", lambda m: m.get("hwm_kb_loaded"), mib)
    row("VmRSS after restart (median)", lambda m: m.get("rss_kb_restarted_median"), mib)
    row("restart until GET answers (median)", lambda m: m.get("restart_seconds_median"), lambda x: f"{x:.2f} s")
    times = lambda m: " / ".join("%.2f s" % r["seconds"] for r in m.get("restarts", [])) or "n/a"
    L.append(f"| restart times | {times(ma)} | {times(mb)} | |")
    row("bulk load rate (keys/s)", lambda m: (m.get("load") or {}).get("rate"), lambda x: f"{x:,.0f}")
    row("data dir on disk after load", lambda m: m.get("disk_bytes"), lambda x: f"{x / 1e6:,.0f} MB")
    row("VmRSS empty, before loading", lambda m: m.get("rss_kb_empty"), mib)
    return L


def targets(ts, mem):
    L = ["### Targets\n", "| target | measured | met? |", "|---|---|---|"]
    yes = lambda ok: "n/a" if ok is None else ("yes" if ok else "**no**")
    if ts:
        a, b = ts["labels"]
        w = ts["workloads"]
        rw = ratio(w["write"][1]["rps"], w["write"][0]["rps"])
        rr = ratio(w["read"][1]["rps"], w["read"][0]["rps"])
        rp = ratio(w["read"][1]["p99"], w["read"][0]["p99"])
        l50 = ratio(w["write_c1"][1]["p50"], w["write_c1"][0]["p50"])
        l99 = ratio(w["write_c1"][1]["p99"], w["write_c1"][0]["p99"])
        L.append(f"| write throughput >= 2x etcd (64 connections) | {fmt_ratio(rw)} | {yes(rw and rw >= 2)} |")
        L.append(f"| read throughput >= 2x etcd (64 connections) | {fmt_ratio(rr)} | {yes(rr and rr >= 2)} |")
        L.append(f"| read p99 no worse than etcd (64 connections) | {fmt_ratio(rp)} of etcd's | {yes(rp and rp <= 1)} |")
        L.append(f"| single-connection write latency no worse than etcd | p50 {fmt_ratio(l50)}, p99 {fmt_ratio(l99)} of etcd's "
                 f"| {yes(l50 is not None and l50 <= 1 and l99 <= 1)} |")
    else:
        L.append("| throughput and latency targets | not measured yet | n/a |")
    if mem:
        a, b = mem["labels"]
        mb = mem["memory"].get(b, {})
        r = mb.get("rss_over_raw_loaded")
        if r is None:
            L.append(f"| 1M x 100 B keys in <= 3x raw data RSS | not measured ({mb.get('error', 'missing')}) | **no** |")
        else:
            L.append(f"| 1M x 100 B keys in <= 3x raw data RSS | {r:.2f}x "
                     f"({mb['rss_kb_loaded'] / 1024:,.0f} MiB for {mb['raw_bytes'] / 1e6:.0f} MB) | {yes(r <= 3)} |")
        t = mb.get("restart_seconds_median")
        if t is None:
            L.append(f"| restart with 1M keys < 3 s | not measured ({mb.get('error', 'missing')}) | **no** |")
        else:
            L.append(f"| restart with 1M keys < 3 s | {t:.2f} s | {yes(t < 3)} |")
    else:
        L.append("| memory and restart targets | not measured yet (`kv.sh --memory`) | n/a |")
    return L


def replace_section(doc_path, section):
    try:
        with open(doc_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == HEADING), None)
    if start is None:
        new = lines + ([""] if lines and lines[-1].strip() else []) + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^## ", lines[i])), len(lines))
        tail = lines[end:]
        new = lines[:start] + section + ([""] if tail else []) + tail
    with open(doc_path, "w") as f:
        f.write("\n".join(new).rstrip("\n") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--doc", help="BENCHMARKS.md to update")
    ap.add_argument("--only", help="summarise this one JSON file to stdout")
    args = ap.parse_args()

    if args.only:
        res = load(args.only)
        if res.get("kind") == "memory":
            print("\n".join(memory_section(res) + [""] + targets(None, res)))
        else:
            L, s = throughput_section(res, None)
            print("\n".join(L + [""] + targets(s, None)))
        return

    tp = load(os.path.join(args.results, "kv-throughput.json"))
    mem = load(os.path.join(args.results, "kv-memory.json"))
    section = [HEADING, ""]
    section.append("Produced by `benches/harness/kv.sh` (see `benches/README.md`, which explains each figure). "
                   "Both servers are single-node, on the same 2-core machine, in the same run, driven by the same "
                   "`wrk`. Other engineers' builds may share the machine: the load averages recorded below say "
                   "how busy it was (a load near or above 2 means the figures are noisier and lower than on an idle "
                   "machine, for both servers alike since the runs are interleaved).")
    section.append("")
    ts = None
    if tp:
        plot = os.path.join(args.results, PLOT)
        svg_plot(throughput_summary(tp), plot)
        rel = os.path.relpath(plot, os.path.dirname(os.path.abspath(args.doc or ".")))
        L, ts = throughput_section(tp, rel)
        section += L + [""]
    else:
        section += ["### Throughput and latency\n", "Not measured yet: run `benches/harness/kv.sh`.", ""]
    if mem:
        section += memory_section(mem) + [""]
    else:
        section += ["### Memory and restart with 1M keys\n", "Not measured yet: run `benches/harness/kv.sh --memory`.", ""]
    section += targets(ts, mem)
    if args.doc:
        replace_section(args.doc, section)
        print(f"kv_report: updated {args.doc}", file=sys.stderr)
    else:
        print("\n".join(section))


if __name__ == "__main__":
    main()
