#!/usr/bin/env python3
"""Test helpers for tests/cli/*.sh that a shell cannot do portably: run a tool on a
pseudo-terminal, and stop a tool with a signal once it has read its whole input.

  ttysig.py pty [--in FILE] [--out FILE|pty] [--err FILE|pty] --transcript FILE -- CMD...
      Runs CMD with stdout and/or stderr on one pseudo-terminal (default: both), stdin from
      FILE (default /dev/null), and writes everything the terminal received to the
      transcript. Exits with CMD's status (124 if it did not end within 120 s).

  ttysig.py signal --sig INT|TERM --in FILE --out FILE --err FILE -- CMD...
      Runs CMD with stdin on a pipe, writes FILE into the pipe and keeps it open (a slow
      producer), waits until CMD has read everything (the pipe is empty), sends the signal
      and prints CMD's exit status. With --in none (a tool that reads no stdin, a generator)
      it waits instead until CMD has written something to --out. Bounded: 120 s per wait,
      then it prints "timeout".
"""
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
import struct

LIMIT = 120.0


def split_args(argv):
    if "--" not in argv:
        sys.exit("usage: see the docstring of " + __file__)
    i = argv.index("--")
    opts, cmd = argv[:i], argv[i + 1:]
    d = {}
    for k in range(0, len(opts), 2):
        d[opts[k].lstrip("-")] = opts[k + 1]
    return d, cmd


def run_pty(opts, cmd):
    master, slave = pty.openpty()
    # A wide terminal: no wrapping of the progress line.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    stdin = open(opts.get("in", "/dev/null"), "rb")
    out = opts.get("out", "pty")
    err = opts.get("err", "pty")
    fout = slave if out == "pty" else open(out, "wb")
    ferr = slave if err == "pty" else open(err, "wb")
    p = subprocess.Popen(cmd, stdin=stdin, stdout=fout, stderr=ferr, start_new_session=True)
    os.close(slave)
    transcript = bytearray()
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            transcript += chunk
        elif p.poll() is not None:
            break
    try:
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = 124
    open(opts["transcript"], "wb").write(bytes(transcript))
    return rc


def pipe_pending(fd):
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


def run_signal(opts, cmd):
    sig = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}[opts["sig"]]
    r, w = os.pipe()
    p = subprocess.Popen(cmd, stdin=r, stdout=open(opts["out"], "wb"), stderr=open(opts["err"], "wb"))
    os.close(r)
    data = b"" if opts["in"] == "none" else open(opts["in"], "rb").read()
    view = memoryview(data)
    deadline = time.monotonic() + LIMIT
    while view and time.monotonic() < deadline:
        _, ws, _ = select.select([], [w], [], 0.5)
        if ws:
            view = view[os.write(w, view[:65536]):]
    # The tool has read everything once the pipe is empty; the write end stays open, so it
    # then waits for more (a producer that is slow, not finished).
    while (view or pipe_pending(w)) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    while opts["in"] == "none" and os.path.getsize(opts["out"]) == 0 and time.monotonic() < deadline \
            and p.poll() is None:
        time.sleep(0.05)
    if p.poll() is not None or time.monotonic() >= deadline:
        print("timeout" if p.poll() is None else "ended early %d" % p.returncode)
        p.kill()
        return 1
    time.sleep(0.2)  # let it work on what it read (the stop must not lose any of it)
    p.send_signal(sig)
    try:
        rc = p.wait(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        p.kill()
        print("timeout")
        return 1
    os.close(w)
    print(rc)
    return 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("pty", "signal"):
        sys.exit(__doc__)
    opts, cmd = split_args(sys.argv[2:])
    if sys.argv[1] == "pty":
        sys.exit(run_pty(opts, cmd))
    sys.exit(run_signal(opts, cmd))


if __name__ == "__main__":
    main()
