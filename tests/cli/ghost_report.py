#!/usr/bin/env python3
"""ghost-diff's HTML report in headless Chromium, on the synthetic run of ghost_view_demo.

  ghost_report.py DEMO_BIN [--screenshot PNG] [--window-size W,H]

Writes the report with DEMO_BIN (tests/ghost_view_demo.cpp) into a temporary directory, then
runs html_check.py on it: the rendered page shows the run's numbers at their ids and every
chart, loads nothing, and screenshots as a valid PNG (kept at PNG when given: that is how
docs/img/ghost-report.png is made, with --window-size 1000,2500). Exit status: html_check.py's (0, 1, or 77 without Chromium).
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# The demo's numbers (a fixed integer generator: the same on every machine).
EXPECT = {
    "n-mesh-events": "35,840",
    "n-relay-events": "34,758",
    "n-matches": "34,593",
    "n-drops": "347",
    "n-unobserved": "1,060",
    "n-unobserved-mesh": "900",
    "n-unobserved-relay": "160",
    "n-relay-only": "5",
    "n-replayed": "719",
    "delivered": "99.0",
    "win-rate": "96.0",
    "p50": "2.0",
    "p90": "2.7",
    "p99": "17.9",
    "drops-shown": "200",
}
CHARTS = ["latency-hist", "winrate-time", "drops-time", "drops-host", "drops-collection", "timeline", "drop-table"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--window-size", default="1280,2000", metavar="W,H")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ghost_report.") as tmp:
        page = os.path.join(tmp, "report.html")
        p = subprocess.run([a.demo, page], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        if p.returncode != 0:
            print("FAIL - %s %s: exit status %d" % (a.demo, page, p.returncode))
            print("    " + p.stderr.decode("utf-8", "replace")[-1000:])
            return 1
        print("ok - %s wrote a report of %d bytes" % (os.path.basename(a.demo), os.path.getsize(page)), flush=True)
        cmd = [sys.executable, os.path.join(HERE, "html_check.py"), page, "--window-size", a.window_size,
               "--screenshot", os.path.abspath(a.screenshot) if a.screenshot else os.path.join(tmp, "report.png")]
        for k, v in EXPECT.items():
            cmd += ["--expect", "%s=%s" % (k, v)]
        for k in CHARTS:
            cmd += ["--present", k]
        return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
