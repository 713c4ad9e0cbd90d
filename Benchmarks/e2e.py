#!/usr/bin/env python3
"""End-to-end ingest benchmark: Sidestat against the machine's raw UDP receive cost, on loopback.

Builds Sidestat (release) and the ../shared/perf tools, then, with the server pinned to CPU 1 and the load generator
and the fake carbon on CPU 0 (so every figure is per server core):

  ingest   for 1-line datagrams and packed (~1400-byte) datagrams: udprecv -b 64 (the raw receiver) and Sidestat
           each take a 3 s blast of counter lines at the fastest rate one sender core produces; Sidestat's flushed
           counter sums are compared with what was sent (loss, never more), and CPU per line comes from
           utime+stime in /proc.
  memory   idle RSS of the release binary (stripped, default configuration); then 1M distinct counter keys in one
           interval at seriesBudget 2,000,000: the resting RSS, and the high-water mark once their flush is delivered.
  budget   (only with --only budget) RSS after 10M distinct counter keys in one interval: a runaway tag.
  timers   1M distinct timer keys with one sample each (seriesBudget 2,000,000): the flush's CPU seconds, peak RSS,
           and whether counters sent during the flush all arrive; then 10k timer keys x 100 samples: the flush's CPU
           seconds.

Prints one markdown table. Usage: Benchmarks/e2e.py [--quick] [--reps N] [--skip-build] [--against OTHER_BINARY]
(--against: the ingest runs alternate the two binaries within each repetition, for a back-to-back comparison).
Loopback only; every run is bounded in count and time.
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF = os.path.join(os.path.dirname(ROOT), "shared", "perf")
CLK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "1", "0"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def memory_kb(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def free_port():
    import socket
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port")


class Tools:
    def __init__(self, work):
        self.dir = os.path.join(work, "bin")
        os.makedirs(self.dir, exist_ok=True)
        for name, flags in (("statsdgen", []), ("udprecv", ["-pthread"]), ("carbonsink", [])):
            subprocess.run(["cc", "-O2", *flags, "-o", os.path.join(self.dir, name), os.path.join(PERF, name + ".c")],
                           check=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def generate(self, port, lines, packed, keys=100, rate=0, types="c", prefix="perf", seconds=3, offset=0):
        command = ["taskset", "-c", CLIENT_CPU, self.path("statsdgen"), "-p", str(port), "-n", str(lines),
                   "-k", str(keys), "-o", str(offset), "-t", types, "-T", str(seconds), "-x", prefix]
        command += ["-P", "1400"] if packed else ["-m", "1"]
        if rate:
            command += ["-r", str(int(rate))]
        return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


class Sink:
    """carbonsink: sums the flushed values of the counters statsdgen sends (stats_counts.<prefix>.c.k*)."""

    def __init__(self, tools, work, match, gap_ms=300):
        self.port = free_port()
        self.path = tempfile.mktemp(prefix="sink", suffix=".jsonl", dir=work)
        self.file = open(self.path, "w")
        self.process = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, tools.path("carbonsink"), "-p", str(self.port), "-m", match, "-s", "",
             "-g", str(gap_ms), "-T", "900"], stdout=self.file, stderr=subprocess.DEVNULL)
        time.sleep(0.2)

    def bursts(self):
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def total(self):
        return sum(b["msum"] for b in self.bursts())

    def settle(self, quiet=2.5, limit=60):
        """Waits until no burst has changed the total for `quiet` seconds."""
        start = time.monotonic()
        last_total, last_change = self.total(), time.monotonic()
        while time.monotonic() - start < limit:
            time.sleep(0.25)
            total = self.total()
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                break
        return last_total

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.file.close()


class Sidestat:
    def __init__(self, binary, work, sink_port, flush_ms, extra=""):
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="sidestat", dir=work)
        config = os.path.join(self.directory, "config.js")
        with open(config, "w") as f:
            f.write("{ port: %d, mgmt_port: %d, flushInterval: %d, graphiteHost: '127.0.0.1', graphitePort: %d%s }\n"
                    % (self.port, free_port(), flush_ms, sink_port, extra))
        self.log = open(os.path.join(self.directory, "server.log"), "w")
        self.process = subprocess.Popen(["taskset", "-c", SERVER_CPU, binary, "--config", config],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(os.path.join(self.directory, "server.log")) as f:
                if "server is up" in f.read():
                    return
            if self.process.poll() is not None:
                raise RuntimeError("sidestat exited; see " + self.directory)
            time.sleep(0.05)
        raise RuntimeError("sidestat did not start")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def raw_receiver(tools, packed, seconds):
    port = free_port()
    receiver = subprocess.Popen(["taskset", "-c", SERVER_CPU, tools.path("udprecv"), "-p", str(port), "-b", "64",
                                 "-T", "30", "-i", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.3)
    c0 = cpu_seconds(receiver.pid)
    sent = tools.generate(port, 200_000_000, packed, seconds=seconds)
    time.sleep(0.3)
    c1 = cpu_seconds(receiver.pid)
    got = json.loads(receiver.communicate()[0])
    lines = got["pkts"] * sent["lines_per_pkt"]
    return {"lines_per_s": lines / sent["secs"], "cpu_ns_per_line": (c1 - c0) / max(lines, 1) * 1e9,
            "cpu_us_per_datagram": (c1 - c0) / max(got["pkts"], 1) * 1e6,
            "loss": 1 - got["pkts"] / sent["pkts"], "lines_per_pkt": sent["lines_per_pkt"]}


def sidestat_ingest(tools, binary, work, packed, seconds, dashboard=False):
    sink = Sink(tools, work, "stats_counts.perf.c.k")
    server = Sidestat(binary, work, sink.port, 1000, ", dashboard: { port: %d }" % free_port() if dashboard else "")
    try:
        time.sleep(1.2)
        before = sink.total()
        c0 = cpu_seconds(server.pid)
        sent = tools.generate(server.port, 200_000_000, packed, seconds=seconds)
        got = sink.settle() - before
        c1 = cpu_seconds(server.pid)  # the settle wait is idle apart from 1 s flushes of 100 keys
        rss = memory_kb(server.pid)["VmRSS"]
    finally:
        server.stop()
        sink.stop()
    return {"lines_per_s": got / sent["secs"], "sent_lines_per_s": sent["lps"],
            "cpu_ns_per_line": (c1 - c0) / max(got, 1) * 1e9,
            "cpu_us_per_datagram": (c1 - c0) / max(got / sent["lines_per_pkt"], 1) * 1e6,
            "loss": 1 - got / sent["counter_sum"], "over": got > sent["counter_sum"], "rss_mib": rss / 1024}


def memory(tools, binary, work, keys, budget=None):
    """`keys` distinct counter keys sent just after start-up, all in one interval: the resting RSS once they are in,
    then the high-water mark (VmHWM) once the flush that sends them is delivered."""
    sink = Sink(tools, work, "nomatch", gap_ms=500)
    flush_s = 20
    server = Sidestat(binary, work, sink.port, flush_s * 1000,
                      extra=f", seriesBudget: {budget}" if budget else "")
    try:
        time.sleep(1.0)
        idle = memory_kb(server.pid)["VmRSS"]
        tools.generate(server.port, keys, True, keys=keys, rate=400_000, prefix="mem", seconds=flush_s - 5)
        time.sleep(0.5)
        loaded = memory_kb(server.pid)
        deadline = time.monotonic() + flush_s * 2 + 30
        while time.monotonic() < deadline:
            # Without a budget, the default keeps 100,000 keys per shard.
            big = [b for b in sink.bursts() if b["lines"] >= min(keys, budget or 100_000)]
            if big and time.monotonic() - big[0]["end"] > 1.0:
                break
            time.sleep(0.2)
        flushed = memory_kb(server.pid)
    finally:
        server.stop()
        sink.stop()
    return {"idle_rss_mib": idle / 1024, "rss_mib": loaded["VmRSS"] / 1024, "hwm_mib": flushed["VmHWM"] / 1024,
            "flushed": bool(big)}


def release_idle(binary, work):
    """Idle RSS of the binary users deploy: a stripped copy (as scripts/release ships it), run with no arguments
    (the default configuration: UDP 127.0.0.1:8125 and [::1]:8125, management 127.0.0.1:8126, the console)."""
    copy = os.path.join(work, "sidestat-release")
    shutil.copy(binary, copy)
    subprocess.run(["strip", copy], check=True)
    directory = tempfile.mkdtemp(prefix="idle", dir=work)
    log_path = os.path.join(directory, "server.log")
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(["taskset", "-c", SERVER_CPU, copy], cwd=directory, stdout=log_file,
                                   stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "/usr/bin")})
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "server is up" not in open(log_path).read():
                if process.poll() is not None:
                    log("the release binary exited (ports 8125/8126 taken?): " + open(log_path).read())
                    return None
                time.sleep(0.05)
            time.sleep(2.0)
            status = {}
            with open(f"/proc/{process.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS", "RssAnon", "RssFile", "Threads")):
                        key, value = line.split(":")
                        status[key] = int(value.split()[0])
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
    return {"rss_mib": status["VmRSS"] / 1024, "anon_mib": status["RssAnon"] / 1024,
            "file_mib": status["RssFile"] / 1024, "threads": status["Threads"]}


def timer_flush(tools, binary, work, keys, samples, flush_s):
    """`keys` timer keys with `samples` samples each, sent in the first interval; then the flush's CPU seconds and
    peak RSS, with counters paced across the flush tick (every one of them must arrive)."""
    sink = Sink(tools, work, "stats_counts.during.c.k", gap_ms=500)
    started = time.time()
    server = Sidestat(binary, work, sink.port, int(flush_s * 1000), extra=", seriesBudget: 2000000")
    try:
        # Sidestat flushes at round(start) + k * interval, like statsd.
        flush_at = round(started) + flush_s
        tools.generate(server.port, keys * samples, True, keys=keys, types="ms", rate=400_000, prefix="tmr",
                       seconds=flush_s)
        time.sleep(max(0.0, flush_at - 1.0 - time.time()))
        before = memory_kb(server.pid)
        c0 = cpu_seconds(server.pid)
        during = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, tools.path("statsdgen"), "-p", str(server.port), "-n", "150000", "-k", "100",
             "-t", "c", "-T", "10", "-x", "during", "-P", "1400", "-r", "50000"],
            stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            big = [b for b in sink.bursts() if b["lines"] >= keys * 2]
            if big and time.monotonic() - big[0]["end"] > 1.0:
                break
            time.sleep(0.1)
        c1 = cpu_seconds(server.pid)
        after = memory_kb(server.pid)
        sent = json.loads(during.communicate()[0])
        got = sink.settle(quiet=flush_s + 1.5, limit=flush_s * 3 + 10)
        big = [b for b in sink.bursts() if b["lines"] >= keys * 2]
    finally:
        server.stop()
        sink.stop()
    return {"flush_cpu_s": c1 - c0, "rss_before_mib": before["VmRSS"] / 1024,
            "peak_rss_mib": after["VmHWM"] / 1024, "flush_lines": big[0]["lines"] if big else 0,
            "during_sent": sent["counter_sum"], "during_got": got}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs (CI smoke)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build-static", "release", "sidestat"))
    parser.add_argument("--only", default="ingest,memory,timers")
    parser.add_argument("--against", help="a second sidestat binary, run alternately with --binary in the ingest runs")
    parser.add_argument("--dashboard", action="store_true",
                        help="also run --binary with the dashboard on, alternately with the others in the ingest runs")
    args = parser.parse_args()
    if not args.skip_build:
        # The shipped build: Swift's runtime linked in statically (no shared Swift libraries to map).
        subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--scratch-path", ".build-static",
                        "--product", "sidestat"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sidestat-bench-")
    tools = Tools(work)
    only = set(args.only.split(","))
    reps = 1 if args.quick else args.reps
    seconds = 1 if args.quick else 3
    rows = []
    if "ingest" in only:
        # Each variant is a binary, and whether its dashboard is on.
        binaries = [(args.binary, False)] + ([(args.against, False)] if args.against else []) \
            + ([(args.binary, True)] if args.dashboard else [])
        for packed in (False, True):
            raw_runs, ours = [], {binary: [] for binary in binaries}
            for rep in range(reps):
                raw_runs.append(raw_receiver(tools, packed, seconds))
                for binary in binaries:
                    ours[binary].append(sidestat_ingest(tools, binary[0], work, packed, seconds, dashboard=binary[1]))
                    log(json.dumps({"packed": packed, "binary": binary, "raw": raw_runs[-1],
                                    "sidestat": ours[binary][-1]}))
            raw_ns = median([r["cpu_ns_per_line"] for r in raw_runs])
            raw_us = median([r["cpu_us_per_datagram"] for r in raw_runs])
            name = "packed ~1400 B (%.0f lines/datagram)" % raw_runs[0]["lines_per_pkt"] if packed else "1 line per datagram"
            rows.append((f"udprecv -b 64, {name}", f"{median([r['lines_per_s'] for r in raw_runs]):,.0f}",
                         f"{raw_ns:,.0f} ns/line, {raw_us:.2f} µs/datagram", "1.00",
                         f"{median([r['loss'] for r in raw_runs]) * 100:.2f}%", "-"))
            for binary in binaries:
                runs = ours[binary]
                ns = median([r["cpu_ns_per_line"] for r in runs])
                us = median([r["cpu_us_per_datagram"] for r in runs])
                label = f"sidestat ({binary[0]})" if args.against else "sidestat"
                label += " + dashboard" if binary[1] else ""
                rows.append((f"{label}, {name}", f"{median([r['lines_per_s'] for r in runs]):,.0f}",
                             f"{ns:,.0f} ns/line, {us:.2f} µs/datagram",
                             f"{(ns / raw_ns):.2f}",
                             f"{median([r['loss'] for r in runs]) * 100:.2f}%" + (" (OVER-COUNT)" if any(r["over"] for r in runs) else ""),
                             f"{median([r['rss_mib'] for r in runs]):.1f} MiB"))
    if "memory" in only:
        idle = release_idle(args.binary, work)
        log(json.dumps(idle))
        rows.append(("sidestat idle, the release binary (stripped, default configuration)", "-", "-", "-", "-",
                     f"{idle['rss_mib']:.1f} MiB ({idle['anon_mib']:.1f} anonymous, {idle['file_mib']:.1f} file; "
                     f"{idle['threads']} threads)" if idle else "not measured: ports 8125/8126 taken"))
        keys = 100_000 if args.quick else 1_000_000
        m = memory(tools, args.binary, work, keys, budget=2_000_000)
        log(json.dumps(m))
        rows.append((f"sidestat, {keys:,} distinct counter keys in one interval (seriesBudget 2,000,000)",
                     "-", "-", "-", "-",
                     f"{m['rss_mib']:.1f} MiB resting, {m['hwm_mib']:.1f} MiB high-water at the flush "
                     f"({m['hwm_mib'] / m['rss_mib']:.2f}×)" + ("" if m["flushed"] else " (NO FLUSH SEEN)")))
    if "budget" in only:
        # A runaway tag: 10M distinct keys in one interval. The series budget keeps memory at its own figure.
        keys = 1_000_000 if args.quick else 10_000_000
        r = memory(tools, args.binary, work, keys)
        rows.append((f"sidestat, {keys:,} distinct counter keys in one interval (seriesBudget 100,000 per shard)",
                     "-", "-", "-", "-", f"{r['rss_mib']:.1f} MiB (peak {r['hwm_mib']:.1f})"))
    if "timers" in only:
        keys = 100_000 if args.quick else 1_000_000
        t = timer_flush(tools, args.binary, work, keys, 1, 8 if args.quick else 10)
        log(json.dumps(t))
        loss = 1 - t["during_got"] / t["during_sent"] if t["during_sent"] else float("nan")
        rows.append((f"sidestat, flush of {keys:,} timer keys x 1 sample", "-",
                     f"flush {t['flush_cpu_s']:.2f} CPU s ({t['flush_lines']:,} lines)", "-",
                     f"{loss * 100:.2f}% of {t['during_sent']:,} counters sent across the flush",
                     f"{t['rss_before_mib']:.0f} MiB before, peak {t['peak_rss_mib']:.0f} MiB"))
        keys, samples = (1_000, 100) if args.quick else (10_000, 100)
        t = timer_flush(tools, args.binary, work, keys, samples, 8 if args.quick else 10)
        log(json.dumps(t))
        rows.append((f"sidestat, flush of {keys:,} timer keys x {samples} samples", "-",
                     f"flush {t['flush_cpu_s']:.2f} CPU s ({t['flush_lines']:,} lines)", "-", "-",
                     f"peak {t['peak_rss_mib']:.0f} MiB"))
    print("| run | lines/s delivered | CPU (server core) | ratio to udprecv (CPU per line) | loss | RSS |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
