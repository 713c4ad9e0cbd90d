#!/usr/bin/env python3
"""The dashboard under load: 10,000 keys held for 360 flushes.

Runs the release binary (static Swift runtime) twice with the same load, with and without the dashboard: 10,000
counter keys sent every flush (flushInterval 100 ms, so 360 flushes take 36 s), and reports Sidestat's RSS in each
run, the difference (the dashboard's memory, against its budget), the size of the history the dashboard reports
itself, and how long the page takes to load in Chromium (navigation to the first rendered key list, median of 5
loads, through Playwright), and how long /api/keys takes.

    python3 Benchmarks/dashboard.py [--skip-build] [--quick]

Needs Debian's chromium and the Playwright virtualenv that scripts/test makes (.build/venvs/playwright).
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build-static", "release", "sidestat")
PLAYWRIGHT = os.path.join(ROOT, ".build", "venvs", "playwright", "bin", "python")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def datagrams(keys):
    out, current = [], b""
    for i in range(keys):
        line = b"dash.key.%05d:1|c" % i
        if len(current) + len(line) + 1 > 1400:
            out.append(current)
            current = b""
        current += (b"\n" if current else b"") + line
    return out + ([current] if current else [])


def run(dashboard, keys, flushes, budget):
    work = tempfile.mkdtemp(prefix="sidestat-dashboard-")
    port, mgmt, web = free_port(), free_port(), free_port()
    extra = f", dashboard: {{ port: {web}, flushes: {flushes}, budgetMiB: {budget} }}" if dashboard else ""
    config = os.path.join(work, "config.js")
    with open(config, "w") as f:
        f.write("{ port: %d, mgmt_port: %d, flushInterval: 100, backends: []%s }\n" % (port, mgmt, extra))
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([BINARY, "--config", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "server is up" not in open(os.path.join(work, "server.log")).read():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("sidestat did not start; see " + work)
            time.sleep(0.05)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = datagrams(keys)
        start = time.monotonic()
        # One round of every key per flush interval, for `flushes` intervals and a little more.
        rounds = int(flushes * 1.05) + 5
        for index in range(rounds):
            for datagram in payload:
                sender.sendto(datagram, ("127.0.0.1", port))
            pause = start + (index + 1) * 0.1 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        time.sleep(0.5)
        result = {"rss_mib": rss_mib(server.pid)}
        if dashboard:
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{web}/api/health").read())
            result.update(history_mib=health["bytes"] / 2**20, keys=health["keys"], flushes=health["flushes"],
                          evicted=health["evicted"])
            api = []
            for _ in range(5):
                t0 = time.monotonic()
                urllib.request.urlopen(f"http://127.0.0.1:{web}/api/keys?limit=200&points=60").read()
                api.append((time.monotonic() - t0) * 1000)
            result["api_keys_ms"] = statistics.median(api)
            script = f"""
import json, time
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page()
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        page.goto("http://127.0.0.1:{web}/")
        page.wait_for_selector("body[data-ready='1'] #user .row", timeout=20000)
        times.append((time.monotonic() - t0) * 1000)
    shown = page.eval_on_selector_all("#user .row", "rows => rows.length")
    print(json.dumps({{"load_ms": sorted(times)[len(times) // 2], "rows": shown}}))
    browser.close()
"""
            out = subprocess.run([PLAYWRIGHT, "-c", script], capture_output=True, text=True, check=True).stdout
            result.update(json.loads(out.strip().splitlines()[-1]))
        return result
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1,000 keys, 30 flushes (CI smoke)")
    parser.add_argument("--budget", type=int, default=32, help="the dashboard's budgetMiB")
    args = parser.parse_args()
    if not args.skip_build:
        subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--scratch-path", ".build-static",
                        "--product", "sidestat"], cwd=ROOT, check=True)
    keys, flushes = (1_000, 30) if args.quick else (10_000, 360)
    without = run(False, keys, flushes, args.budget)
    with_dashboard = run(True, keys, flushes, args.budget)
    print(json.dumps({"without": without, "with": with_dashboard}), file=sys.stderr)
    extra = with_dashboard["rss_mib"] - without["rss_mib"]
    print(f"| {keys:,} keys x {flushes} flushes | RSS without dashboard | with | extra (budget {args.budget} MiB) "
          f"| history it reports | evicted | /api/keys (200 keys) | page load in Chromium |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| | {without['rss_mib']:.1f} MiB | {with_dashboard['rss_mib']:.1f} MiB | {extra:.1f} MiB "
          f"| {with_dashboard['history_mib']:.1f} MiB ({with_dashboard['keys']:,} keys, {with_dashboard['flushes']} flushes) "
          f"| {with_dashboard['evicted']} | {with_dashboard['api_keys_ms']:.1f} ms | {with_dashboard['load_ms']:.0f} ms |")
    if extra > args.budget or with_dashboard["load_ms"] > 1000:
        print("dashboard.py: over the budget or slower than 1 s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
