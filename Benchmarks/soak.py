#!/usr/bin/env python3
"""Soak and chaos run: Sidestat under mixed traffic while its world misbehaves, every line accounted for.

For --minutes (default 30), against the release build and a carbon listener of its own:

  traffic   UDP counter lines (500 steady keys, one malformed line in every 50 datagrams), a persistent TCP client
            (200 keys, lines split across writes now and then), key churn (a new generation of 5,000 keys every
            interval, with deleteIdleStats on, so the live keys stay within the budget) and, every --burst-minutes,
            a burst of 30,000 new keys that passes the series budget (20,000) on purpose.
  chaos     carbon is stopped for 60 s every --outage-minutes (flushes wait in the retry buffer and are replayed);
            SIGHUP every 3 minutes (the file is reloaded); the management port is asked stats/counters/health
            without pause by two clients.

Every minute it prints RSS, lines sent, lines flushed and every bound's counter. At the end (SIGTERM, final flush)
it accounts for every counter line: sent = flushed + refused by the budget (statsd.series_dropped) + dropped by the
kernel (the UDP socket's drop count in /proc/net/udp), bad lines sent = statsd.bad_lines_seen flushed, and RSS after
warm-up must stay under --rss-limit-mib. Exit code 0 when both hold.

Usage: Benchmarks/soak.py [--minutes 30] [--skip-build] [--binary PATH] [--interval-ms 10000]
Loopback only; bounded in time. docs/reliability.md records a run.
"""
import argparse, os, random, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args):
    print(*args, flush=True)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def udp_drops(port):
    """The kernel's drop count for the UDP socket bound to `port` (the last column of /proc/net/udp)."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        total += int(fields[-1])
        except FileNotFoundError:
            pass
    return total


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Carbon:
    """A plaintext carbon listener that sums what it receives; `stop()` closes it and its connections (an outage)."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.sums = {}
        self.points = 0
        self.listener = None
        self.connections = []
        self.up = False

    def start(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.up = True
        threading.Thread(target=self.accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        self.up = False
        self.listener.close()
        with self.lock:
            connections, self.connections = self.connections, []
        for c in connections:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def accept(self, listener):
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections.append(connection)
            threading.Thread(target=self.read, args=(connection,), daemon=True).start()

    def read(self, connection):
        pending = b""
        while True:
            try:
                data = connection.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            pending += data
            lines = pending.split(b"\n")
            pending = lines.pop()
            with self.lock:
                for line in lines:
                    fields = line.split()
                    if len(fields) != 3:
                        continue
                    name = fields[0].decode()
                    self.points += 1
                    if name.startswith("stats_counts."):
                        self.sums[name] = self.sums.get(name, 0.0) + float(fields[1])
        # A partial last line is lost only if Sidestat wrote one and was cut off; it would show as a shortfall.

    def total(self, prefix):
        with self.lock:
            return sum(v for k, v in self.sums.items() if k.startswith(prefix))

    def value(self, name):
        with self.lock:
            return self.sums.get(name, 0.0)


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}

    def add(self, name, n=1):
        with self.lock:
            self.values[name] = self.values.get(name, 0) + n

    def get(self, name):
        with self.lock:
            return self.values.get(name, 0)


def udp_traffic(port, sent, stop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n = 0
    while not stop.is_set():
        lines = [f"soak.u.k{(n * 20 + i) % 500}:1|c" for i in range(20)]
        if n % 50 == 0:
            lines.insert(7, "soak.bad:not_a_number|c")
            sent.add("bad")
        s.sendto("\n".join(lines).encode(), ("127.0.0.1", port))
        sent.add("lines", 20)
        n += 1
        time.sleep(0.01)


def tcp_traffic(port, sent, stop):
    n = 0
    connection = None
    while not stop.is_set():
        if connection is None:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.5)
                continue
        payload = "".join(f"soak.t.k{(n * 10 + i) % 200}:1|c\n" for i in range(10)).encode()
        try:
            if n % 7 == 0:  # a line split across two writes
                connection.sendall(payload[:13])
                time.sleep(0.002)
                connection.sendall(payload[13:])
            else:
                connection.sendall(payload)
            sent.add("lines", 10)
        except OSError:
            connection.close()
            connection = None
            sent.add("tcp_reconnects")
        n += 1
        time.sleep(0.02)
    if connection is not None:
        connection.close()


def send_keys(port, prefix, count, sent, pause=0.002):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for start in range(0, count, 20):
        lines = [f"{prefix}.k{i}:1|c" for i in range(start, min(count, start + 20))]
        s.sendto("\n".join(lines).encode(), ("127.0.0.1", port))
        sent.add("lines", len(lines))
        time.sleep(pause)


def churn_traffic(port, interval, sent, stop):
    generation = 0
    while not stop.wait(interval):
        send_keys(port, f"soak.churn.g{generation}", 5000, sent)
        generation += 1


def management_hammer(port, sent, stop):
    commands = [b"stats\n", b"counters\n", b"health\n", b"gauges\n"]
    n = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(commands[n % len(commands)])
                c.shutdown(socket.SHUT_WR)
                while c.recv(1 << 16):
                    pass
            sent.add("management")
        except OSError:
            sent.add("management_errors")
        n += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--interval-ms", type=int, default=10_000)
    parser.add_argument("--outage-minutes", type=float, default=7)
    parser.add_argument("--burst-minutes", type=float, default=10)
    parser.add_argument("--warmup-minutes", type=float, default=3)
    parser.add_argument("--rss-limit-mib", type=float, default=200)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build-static", "release", "sidestat"))
    args = parser.parse_args()
    if not args.skip_build:
        subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--scratch-path", ".build-static",
                        "--product", "sidestat"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="sidestat-soak-")
    carbon = Carbon()
    carbon.start()
    udp_port, tcp_port, mgmt_port = free_port(socket.SOCK_DGRAM), free_port(), free_port()
    config = os.path.join(work, "config.js")
    with open(config, "w") as f:
        f.write(f"""{{
  servers: [{{server: "./servers/udp", port: {udp_port}}}, {{server: "./servers/tcp", port: {tcp_port}}}],
  mgmt_port: {mgmt_port}, flushInterval: {args.interval_ms},
  graphiteHost: "127.0.0.1", graphitePort: {carbon.port},
  deleteIdleStats: true, seriesBudget: 20000
}}
""")
    server_log = open(os.path.join(work, "server.log"), "w")
    daemon = subprocess.Popen([args.binary, config], stdout=server_log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while "server is up" not in open(os.path.join(work, "server.log")).read():
        if daemon.poll() is not None or time.monotonic() > deadline:
            sys.exit("sidestat did not start; see " + work)
        time.sleep(0.05)
    log(f"# soak: {args.minutes} min, flush every {args.interval_ms} ms, work directory {work}")
    sent = Counts()
    stop = threading.Event()
    interval = args.interval_ms / 1000
    threads = [
        threading.Thread(target=udp_traffic, args=(udp_port, sent, stop), daemon=True),
        threading.Thread(target=tcp_traffic, args=(tcp_port, sent, stop), daemon=True),
        threading.Thread(target=churn_traffic, args=(udp_port, interval, sent, stop), daemon=True),
        threading.Thread(target=management_hammer, args=(mgmt_port, sent, stop), daemon=True),
        threading.Thread(target=management_hammer, args=(mgmt_port, sent, stop), daemon=True),
    ]
    for t in threads:
        t.start()
    start = time.monotonic()
    end = start + args.minutes * 60
    next_report = start
    next_hup = start + 180
    next_outage = start + args.outage_minutes * 60
    outage_ends = None
    next_burst = start + args.burst_minutes * 60
    bursts = 0
    samples = []
    log("| min | RSS MiB | lines sent | soak lines flushed | series_dropped | bad lines seen | UDP kernel drops | "
        "carbon | management replies |")
    log("|---|---|---|---|---|---|---|---|---|")
    while time.monotonic() < end:
        now = time.monotonic()
        if daemon.poll() is not None:
            sys.exit(f"sidestat exited with {daemon.returncode}; see {work}")
        samples.append((now - start, rss_mib(daemon.pid)))
        if now >= next_hup:
            daemon.send_signal(signal.SIGHUP)
            sent.add("sighup")
            next_hup += 180
        if outage_ends is None and now >= next_outage:
            carbon.stop()
            outage_ends = now + 60
            sent.add("outages")
        elif outage_ends is not None and now >= outage_ends:
            carbon.start()
            outage_ends = None
            next_outage = now + args.outage_minutes * 60
        if now >= next_burst:
            threading.Thread(target=send_keys, args=(udp_port, f"soak.burst.b{bursts}", 30_000, sent, 0.001),
                             daemon=True).start()
            bursts += 1
            next_burst += args.burst_minutes * 60
        if now >= next_report:
            log(f"| {(now - start) / 60:.0f} | {samples[-1][1]:.1f} | {sent.get('lines'):,} | "
                f"{carbon.total('stats_counts.soak.'):,.0f} | {carbon.value('stats_counts.statsd.series_dropped'):,.0f} | "
                f"{carbon.value('stats_counts.statsd.bad_lines_seen'):,.0f} | {udp_drops(udp_port):,} | "
                f"{'up' if carbon.up else 'DOWN'} | {sent.get('management'):,} |")
            next_report += 60
        time.sleep(1)
    if outage_ends is not None:
        carbon.start()
    stop.set()
    for t in threads:
        t.join(10)
    time.sleep(0.5)
    drops = udp_drops(udp_port)
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(60)
    time.sleep(0.5)
    server_log.close()
    text = open(os.path.join(work, "server.log")).read()
    flushed = carbon.total("stats_counts.soak.")
    refused = carbon.value("stats_counts.statsd.series_dropped")
    bad_seen = carbon.value("stats_counts.statsd.bad_lines_seen")
    lines = sent.get("lines")
    after_warmup = [rss for t, rss in samples if t >= args.warmup_minutes * 60]
    warm = after_warmup[0] if after_warmup else 0
    peak = max(after_warmup) if after_warmup else 0
    accounted = flushed + refused + drops
    log("")
    log(f"exit code on SIGTERM: {code}")
    log(f"counter lines sent {lines:,}; flushed {flushed:,.0f} + refused by the budget {refused:,.0f} + dropped by "
        f"the kernel {drops:,} = {accounted:,.0f} ({'all accounted for' if accounted == lines else 'MISMATCH %+d' % (accounted - lines)})")
    log(f"bad lines sent {sent.get('bad'):,}; bad_lines_seen flushed {bad_seen:,.0f}")
    log(f"RSS after warm-up ({args.warmup_minutes:g} min) {warm:.1f} MiB, highest after it {peak:.1f} MiB "
        f"(limit {args.rss_limit_mib:g} MiB); last {samples[-1][1]:.1f} MiB")
    log(f"chaos: {sent.get('outages')} carbon outages of 60 s, {sent.get('sighup')} SIGHUP, {bursts} bursts of 30,000 "
        f"new keys, {sent.get('management'):,} management replies ({sent.get('management_errors')} errors), "
        f"{sent.get('tcp_reconnects')} TCP reconnects; reloads logged: {text.count('Configuration reloaded')}; "
        f"series budget logs: {text.count('Series budget reached')}")
    ok = code == 0 and accounted == lines and bad_seen == sent.get("bad") and peak <= args.rss_limit_mib
    log("result: " + ("PASS" if ok else "FAIL") + f" (work directory {work})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
