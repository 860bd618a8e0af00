#!/usr/bin/python3
"""Side-by-side benchmark of `keelson kv` and etcd 3.4.23 over the v2 HTTP API.

Run it through kv.sh, which installs wrk and taskset first. Standard library
only. Every server runs on core 0 and wrk on core 1; every wrk run is bounded
by -d; servers get a fresh temporary data dir, listen on 127.0.0.1 only, and
are killed on any exit (normal, exception, SIGINT, SIGTERM).

Throughput mode (default): for each round, etcd then Keelson (a fresh server
each), run: writes at 64 connections, a populate pass, reads at 64
connections, single-connection writes, and the connection-count sweep.
Memory mode (--memory): load N keys of 100-byte values into each server,
record VmRSS, then restart it (same data dir) several times and time start
until a GET of the last key answers 200.

Raw results go to a JSON file; kv_report.py turns them into BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_CPU = "0"
CLIENT_CPU = "1"

# Every process we start, so the cleanup path can kill exactly those.
LIVE = set()


def log(msg):
    print(f"[kv-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_all():
    for p in list(LIVE):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass
        LIVE.discard(p)


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


class Server:
    """One single-node server (etcd or keelson) pinned to SERVER_CPU."""

    def __init__(self, impl, binary, workdir, label):
        self.impl = impl  # "etcd" or "keelson"
        self.binary = binary
        self.label = label
        self.data_dir = tempfile.mkdtemp(prefix=f"{label}-", dir=workdir)
        self.log_path = self.data_dir + ".log"
        self.proc = None
        self.client_port = self.peer_port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client_port}"

    def argv(self):
        c = f"http://127.0.0.1:{self.client_port}"
        p = f"http://127.0.0.1:{self.peer_port}"
        # --flag=value: both accept it (the keelson kv build of 2026-11-21
        # rejected the space-separated form that etcd also takes).
        args = ([self.binary] if self.impl == "etcd" else [self.binary, "kv"]) + [
            "--name=bench",
            f"--data-dir={os.path.join(self.data_dir, 'data')}",
            f"--listen-client-urls={c}",
            f"--advertise-client-urls={c}",
            f"--listen-peer-urls={p}",
            f"--initial-advertise-peer-urls={p}",
            f"--initial-cluster=bench={p}",
            "--enable-v2=true",
        ]
        return ["taskset", "-c", SERVER_CPU] + args

    def start(self, ready_path="/v2/keys/", timeout=120.0):
        """Start and wait until GET ready_path answers 200; return seconds taken."""
        if self.client_port is None:
            self.client_port, self.peer_port = free_port(), free_port()
        logf = open(self.log_path, "ab")
        t0 = time.monotonic()
        # taskset execs the server, so proc.pid is the server's pid.
        self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL)
        LIVE.add(self.proc)
        logf.close()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}:\n{tail(self.log_path)}")
            if http_status(self.client_port, ready_path) == 200:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.label} not ready after {timeout}s; see {self.log_path}")
            time.sleep(0.005)

    def stop(self):
        """Graceful stop (SIGTERM, like systemd), SIGKILL after 30 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        LIVE.discard(self.proc)

    def status_kb(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def disk_bytes(self):
        total = 0
        for root, _dirs, files in os.walk(self.data_dir):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
        return total

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def http_status(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


def wrk(url, script, connections, duration, env, done_file=None, max_seconds=None):
    """Run wrk pinned to CLIENT_CPU with one thread; return its HARNESS_JSON
    figures plus req/s and wrk's own CPU use. With done_file, interrupt wrk
    (SIGINT, so it still reports) as soon as the script writes that file."""
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}",
            f"-d{duration}s", "--timeout", "10s", "-s", os.path.join(HERE, script), url]
    full_env = dict(os.environ, KV_HARNESS_DIR=HERE, **{k: str(v) for k, v in env.items()})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=full_env, text=True)
    LIVE.add(p)
    if done_file:
        deadline = time.monotonic() + (max_seconds or duration)
        while p.poll() is None and not os.path.exists(done_file):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=duration + 60)
    LIVE.discard(p)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in out.splitlines() if l.startswith("HARNESS_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {err}\n{out}")
    res = json.loads(line[len("HARNESS_JSON "):])
    secs = res["duration_us"] / 1e6
    res["rps"] = res["requests"] / secs if secs else 0.0
    res["wrk_cpu"] = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / secs
    res["non_2xx"] = res["errors"]["status"]
    res["socket_errors"] = sum(v for k, v in res["errors"].items() if k != "status")
    return res


def run_wrk_measured(server, script, connections, duration, env):
    cpu0 = server.cpu_seconds()
    res = wrk(server.url, script, connections, duration, env)
    res["server_cpu"] = (server.cpu_seconds() - cpu0) / (res["duration_us"] / 1e6)
    return res


def populate(server, prefix, keys, value_size, key_format, connections=64, max_seconds=3600):
    done = os.path.join(server.data_dir, f"load-{prefix}.done")
    t0 = time.monotonic()
    res = wrk(server.url, "kv_load.lua", connections, int(max_seconds),
              dict(KV_PREFIX=prefix, KV_KEYS=keys, KV_VALUE_SIZE=value_size,
                   KV_KEY_FORMAT=key_format, KV_DONE_FILE=done),
              done_file=done, max_seconds=max_seconds)
    elapsed = time.monotonic() - t0
    if not os.path.exists(done):
        raise RuntimeError(f"loader did not finish {keys} keys on {server.label} in {max_seconds}s")
    with open(done) as f:
        counts = json.load(f)
    if counts["failed"]:
        raise RuntimeError(f"loader: {counts['failed']} PUTs failed on {server.label}")
    return {"keys": keys, "seconds": elapsed, "rate": keys / elapsed, **counts}


def check_status(res, what, allow_non_2xx=False):
    if res["socket_errors"] or (res["non_2xx"] and not allow_non_2xx):
        log(f"  WARNING {what}: errors {res['errors']}")


def throughput_round(server, args):
    d = args.duration
    put_env = dict(KV_PREFIX="bench", KV_KEYS=args.keys, KV_VALUE_SIZE=args.value_size)
    get_env = dict(KV_PREFIX="bench", KV_KEYS=args.keys)
    out = {"load_before": loadavg()}
    out["start_seconds"] = server.start()

    def one(name, script, c, env):
        r = run_wrk_measured(server, script, c, d, env)
        check_status(r, f"{server.label} {name}")
        log(f"  {server.label:8s} {name:14s} {r['rps']:9.0f} req/s  p50 {r['latency_us']['p50']/1000:7.2f} ms"
            f"  p99 {r['latency_us']['p99']/1000:7.2f} ms  srv cpu {r['server_cpu']:.2f}  wrk cpu {r['wrk_cpu']:.2f}")
        return r

    sweep_w, sweep_r = {}, {}
    out["write"] = sweep_w[64] = one("write c64", "kv_put.lua", 64, put_env)
    out["populate"] = populate(server, "bench", args.keys, args.value_size, "%d")
    out["read"] = sweep_r[64] = one("read c64", "kv_get.lua", 64, get_env)
    out["write_c1"] = sweep_w[1] = one("write c1", "kv_put.lua", 1, put_env)
    for c in args.sweep:
        if c not in sweep_w:
            sweep_w[c] = one(f"write c{c}", "kv_put.lua", c, put_env)
        if c not in sweep_r:
            sweep_r[c] = one(f"read c{c}", "kv_get.lua", c, get_env)
    out["sweep_write"] = {str(c): sweep_w[c] for c in sorted(sweep_w)}
    out["sweep_read"] = {str(c): sweep_r[c] for c in sorted(sweep_r)}
    out["rss_kb_after"] = server.status_kb("VmRSS")
    out["load_after"] = loadavg()
    return out


def memory_run(server, args, out):
    """Fill `out` as it goes, so a failure part-way still leaves what was measured."""
    n, vs = args.mem_keys, args.mem_value_size
    key_format = "%07d"
    # Raw data: the key as the store names it ("/mem/0000042") plus the value.
    raw = sum(len(f"/mem/{key_format % i}") for i in range(n)) + n * vs
    out.update({"keys": n, "value_size": vs, "raw_bytes": raw, "load_before": loadavg()})
    server.start()
    rss0 = server.status_kb("VmRSS")
    out["rss_kb_empty"] = rss0
    log(f"  {server.label}: loading {n} keys x {vs} B ...")
    out["load"] = populate(server, "mem", n, vs, key_format, connections=args.mem_connections,
                           max_seconds=args.mem_load_timeout)
    log(f"  {server.label}: loaded in {out['load']['seconds']:.1f} s ({out['load']['rate']:.0f} keys/s)")
    last = f"/v2/keys/mem/{key_format % (n - 1)}"
    if http_status(server.client_port, last) != 200 or http_status(server.client_port, "/v2/keys/mem/0000000") != 200:
        raise RuntimeError(f"{server.label}: loaded keys not readable")
    time.sleep(args.settle)
    out["rss_kb_loaded"] = server.status_kb("VmRSS")
    out["hwm_kb_loaded"] = server.status_kb("VmHWM")
    out["rss_over_raw_loaded"] = out["rss_kb_loaded"] * 1024 / raw
    log(f"  {server.label}: VmRSS {out['rss_kb_loaded']/1024:.0f} MiB = "
        f"{out['rss_over_raw_loaded']:.2f}x raw ({raw/1e6:.0f} MB)")
    restarts = out["restarts"] = []
    for i in range(args.restarts):
        server.stop()
        if i == 0:
            out["disk_bytes"] = server.disk_bytes()
        secs = server.start(ready_path=last, timeout=args.restart_timeout)
        health = http_status(server.client_port, "/health")
        time.sleep(args.settle)
        rss = server.status_kb("VmRSS")
        restarts.append({"seconds": secs, "rss_kb": rss, "health_status": health})
        log(f"  {server.label}: restart {i+1}: GET {last} answered 200 after {secs:.3f} s; VmRSS {rss/1024:.0f} MiB")
    out["restart_seconds_median"] = statistics.median(r["seconds"] for r in restarts)
    out["rss_kb_restarted_median"] = statistics.median(r["rss_kb"] for r in restarts)
    out["load_after"] = loadavg()
    server.stop()


def machine_info():
    info = {
        "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()),
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "cpu_model": "",
        "mem_total_kb": None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def versions(slots):
    v = {}
    try:
        v["wrk"] = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "wrk"],
                                  capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    for impl, binary in slots:
        if impl == "etcd":
            r = subprocess.run([binary, "--version"], capture_output=True, text=True)
            v["etcd"] = r.stdout.splitlines()[0].replace("etcd Version: ", "etcd ") if r.stdout else "?"
        else:
            root = os.path.abspath(os.path.join(HERE, "..", ".."))
            r = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True)
            dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "kv", "cli"],
                                   capture_output=True, text=True)
            v["keelson"] = f"{binary} at commit {r.stdout.strip()}" + (
                " (+ uncommitted changes in kv/ or cli/)" if dirty.stdout.strip() else "")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s per wrk run")
    ap.add_argument("--memory", action="store_true", help="run the 1M-key memory/restart mode instead")
    ap.add_argument("--etcd-only", action="store_true",
                    help="both slots run etcd (to check the harness while keelson is not built)")
    ap.add_argument("--keelson-bin", default=None)
    ap.add_argument("--etcd-bin", default="/usr/bin/etcd")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--sweep", default="1,4,16,64,256")
    ap.add_argument("--mem-keys", type=int, default=1_000_000)
    ap.add_argument("--mem-value-size", type=int, default=100)
    ap.add_argument("--mem-load-timeout", type=float, default=1200)
    ap.add_argument("--mem-connections", type=int, default=64, help="loader connections")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--restart-timeout", type=float, default=180,
                    help="seconds a restart may take before it counts as failed")
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--command", default=None, help="command line to record")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.sweep = [int(x) for x in args.sweep.split(",")]

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    keelson_bin = args.keelson_bin or os.path.join(root, "target", "release", "keelson")
    slots = [("etcd", args.etcd_bin)]
    slots.append(("etcd", args.etcd_bin) if args.etcd_only else ("keelson", keelson_bin))
    labels = ["etcd", "etcd-B" if args.etcd_only else "keelson"]
    for impl, b in slots:
        if not os.access(b, os.X_OK):
            sys.exit(f"kv-bench: {b} is not executable (build keelson or pass --etcd-only)")

    result = {
        "kind": "memory" if args.memory else "throughput",
        "command": args.command or " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(slots),
        "labels": labels,
        "etcd_only": args.etcd_only,
        "params": {k: v for k, v in vars(args).items() if k not in ("out", "command")},
        "load_start": loadavg(),
        "rounds": [],
    }
    workdir = tempfile.mkdtemp(prefix="kv-bench-")
    log(f"load average at start: {result['load_start']}; work dir {workdir}")
    # Snapshot the keelson binary: a build elsewhere in the shared target dir
    # must not swap it out between rounds.
    for i, (impl, b) in enumerate(slots):
        if impl == "keelson":
            copy = os.path.join(workdir, "keelson")
            shutil.copy2(b, copy)
            slots[i] = (impl, copy)
            st = os.stat(b)
            result["versions"]["keelson_binary_mtime"] = datetime.datetime.fromtimestamp(
                st.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        if args.memory:
            result["memory"] = {}
            for (impl, b), label in zip(slots, labels):
                s = Server(impl, b, workdir, label)
                out = result["memory"][label] = {}
                try:
                    memory_run(s, args, out)
                except RuntimeError as e:
                    # Record it and go on: the other server's figures still count.
                    out["error"] = str(e).splitlines()[0]
                    out["load_after"] = loadavg()
                    log(f"  {label}: FAILED: {e}")
                finally:
                    s.cleanup()
        else:
            for r in range(args.rounds):
                log(f"round {r + 1}/{args.rounds}")
                rnd = {}
                for (impl, b), label in zip(slots, labels):
                    s = Server(impl, b, workdir, label)
                    try:
                        rnd[label] = throughput_round(s, args)
                    finally:
                        s.cleanup()
                result["rounds"].append(rnd)
    finally:
        kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    result["load_end"] = loadavg()
    log(f"load average at end: {result['load_end']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
