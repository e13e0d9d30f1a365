# What the python command-line tests share (python3 standard library only): "ok - …" /
# "FAIL - …" lines and their count, stopping a process with a bounded wait, and a bounded
# wait for a condition (tests hold on a busy machine: limits only catch hangs).
import signal, subprocess, time


class Checks:
    """Counts and prints results: ok("name"), bad("name", detail…), check("name", cond, detail…);
    summary() prints "N passed, N failed" and returns the exit status (1 if any failed)."""

    def __init__(self, detail_chars=2000):
        self.passed = self.failed = 0
        self.detail_chars = detail_chars

    def ok(self, name):
        self.passed += 1
        print("ok - " + name, flush=True)

    def bad(self, name, *lines):
        self.failed += 1
        print("FAIL - " + name, flush=True)
        for line in lines:
            print("    " + str(line)[:self.detail_chars], flush=True)

    def check(self, name, cond, *lines):
        if cond:
            self.ok(name)
        else:
            self.bad(name, *lines)
        return bool(cond)

    def summary(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed else 0


def stop(p, sig=signal.SIGTERM, limit=60):
    """Sends `sig` to a running process and waits for it; kills it after `limit` seconds.
    Returns its exit status."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(limit)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def kill_all(procs):
    """Kills (SIGKILL) and reaps every process of `procs` still running: a test's last word,
    in its `finally`, so that nothing it started outlives it."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(pred, limit=300, step=0.5):
    """Polls pred() every `step` seconds for at most `limit` seconds; its last answer."""
    end = time.time() + limit
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False
