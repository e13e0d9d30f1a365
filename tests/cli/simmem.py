#!/usr/bin/env python3
"""Memory of `mesh-sim serve --pdses 20000 --relay` is bounded by its budgets, not by the number
of simulated accounts (issue 10 item 5): the same run (3,000 events, --repo-budget 16) with
20,000 and with 1,000,000 accounts; the peak resident set of the 1,000,000-account run stays under
a fixed bound, and the difference between the two runs, per extra account, stays under 100
bytes (the compact state is ~54 bytes per account; before it, ~800). Peak RSS is the child's
ru_maxrss, so a busy machine changes the time taken, not the figures.

  simmem.py BUILD_DIR"""
import os, subprocess, sys

build = os.path.abspath(sys.argv[1])
mesh_sim = os.path.join(build, "tools", "mesh-sim")
failed = 0


def check(ok, what, *detail):
    global failed
    print(("ok - " if ok else "FAIL - ") + what)
    for d in detail:
        print("    " + d)
    if not ok:
        failed += 1


def serve(accounts):
    """Runs a bounded serve; returns (peak RSS in KiB, its summary line, exit status)."""
    p = subprocess.Popen([mesh_sim, "serve", "--no-corpus", "--pdses", "20000", "--relay", "--accounts", str(accounts),
                          "--rate", "3000", "--events", "3000", "--linger", "0", "--repo-budget", "16"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    summary = [l for l in err.splitlines() if "emitted" in l]
    return usage.ru_maxrss, (summary[-1] if summary else err.strip()), p.returncode


small, small_line, small_rc = serve(20000)
big, big_line, big_rc = serve(1000000)
check(small_rc == 0 and "3,000 events emitted, 3,000 relayed" in small_line, "20,000 accounts: every event served",
      small_line)
check(big_rc == 0 and "3,000 events emitted, 3,000 relayed" in big_line, "1,000,000 accounts: every event served",
      big_line)
bound_kib = 300 * 1024
check(big < bound_kib, "1,000,000 accounts: peak RSS %.0f MiB < %d MiB" % (big / 1024, bound_kib // 1024))
per_account = (big - small) * 1024 / (1000000 - 20000)
check(per_account < 100, "memory per extra account: %.1f bytes < 100 (peak %.0f MiB at 20,000, %.0f MiB at 1,000,000)" % (
    per_account, small / 1024, big / 1024))
print("%d failed" % failed)
sys.exit(1 if failed else 0)
