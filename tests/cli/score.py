#!/usr/bin/env python3
"""Scores a tap's output against the ground truth of `mesh-sim serve --truth` (python3
standard library only).

usage: score.py TRUTH OUTPUT... [--map TRUTH_SRC=OUT_SRC]... [--only SRC]... [--slack S]
                                [--complete] [--cvl-cat PATH] [-v]
  TRUTH    the simulator's --truth frame stream
  OUTPUT   the tap's frame streams, in the order they were written (several runs of a tap are
           given one after the other), or a CVL archive directory (read with cvl-cat:
           --cvl-cat PATH, default `cvl-cat` from PATH)
  --map    the tap's `src` for a truth `src` (relay-tap: relay.test=127.0.0.1:PORT/relay);
           a truth src not mapped keeps its name (mesh-tap with labels pds<i>.test)
  --only   score only these truth srcs (default: every truth src but the relay's records
           when they are not mapped, and never dropped.relay.test)
  --slack  seconds at the end of a connection in which a missed event is excused (default 5: a
           tap learns of a cut without close frame only when it reads again)
  --complete  every truth event must be in the output (none may be excused)
Exit status 0 when every scored source passes, 1 otherwise; one line per source.

What is checked, per source (docs/design.md §2: markers say where a tap was not listening):

The output's records of the source are cut into connections by its markers: `connect` (with
or without `cursor`) opens one, `disconnect` closes it; a `connect` while one is open (a tap
killed with -9 writes no disconnect) closes the previous one at its last record; so does the
end of the output. Messages that carry a seq are matched to truth events by their exact wire
bytes (the tap never re-encodes); epochs (a PDS restarted with its seq reset) are told apart
that way too.

  outside     a message with a seq that is no truth event of the source (or a message
              outside every connection)
  duplicate   a truth event written more than once
  order       the source's events out of the truth's order
  lost        a truth event missing from the output although it was observed:
              - between two events the same connection delivered (a hole mid-stream);
              - after a connect with cursor C and before that connection's first event, in the
                epoch of that event, with seq > C (a replay must start at C + 1);
              - after a live connect (no cursor), emitted at or after the connect, and before
                that connection's first event;
              - emitted while a connection was open, more than --slack seconds before it ended;
              unless a `gap` marker of that connection names its seq (not observed, said so).
  excused     missing and not observed (emitted while disconnected and replayed by no later
              connection, or in a gap range): counted, and an error with --complete.
Messages without a seq (#info OutdatedCursor, error frames FutureCursor / ConsumerTooSlow)
are counted as `control` and must lie inside a connection.

As a module: `score(truth_path, output_paths, mapping, only, slack, complete)` returns
{src: Verdict}; Verdict.ok, Verdict.problems (words), and the counts."""
import bisect, os, struct, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ws_bin  # noqa: E402


# ---- fast reading: envelopes without decoding the wire -----------------------------------

def _head(b, i):
    """(major, argument, index after the head) of the CBOR item at b[i]."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        return major, info, i
    if info == 24:
        return major, b[i], i + 1
    if info == 25:
        return major, struct.unpack_from(">H", b, i)[0], i + 2
    if info == 26:
        return major, struct.unpack_from(">I", b, i)[0], i + 4
    if info == 27:
        return major, struct.unpack_from(">Q", b, i)[0], i + 8
    raise ValueError("bad additional info")


def _skip(b, i):
    """The index after the CBOR item at b[i] (nothing is built)."""
    major, n, i = _head(b, i)
    if major in (2, 3):
        return i + n
    if major == 4:
        for _ in range(n):
            i = _skip(b, i)
    elif major == 5:
        for _ in range(2 * n):
            i = _skip(b, i)
    elif major == 6:
        i = _skip(b, i)
    return i


def seq_of(wire):
    """The payload's integer `seq` of an event-stream message (op 1), None otherwise."""
    try:
        hend = _skip(wire, 0)
        h, _ = ws_bin.cbor(wire[:hend])
        if not isinstance(h, dict) or h.get("op") != 1 or h.get("t") == "#info":
            return None
        major, n, i = _head(wire, hend)
        if major != 5:
            return None
        for _ in range(n):
            kmaj, klen, i = _head(wire, i)
            key = wire[i:i + klen]
            i += klen
            if kmaj == 3 and key == b"seq":
                vmaj, v, _ = _head(wire, i)
                return v if vmaj == 0 else None
            i = _skip(wire, i)
    except (IndexError, ValueError, struct.error):
        return None
    return None


def is_control(wire):
    """An #info message or an error frame (they carry no seq and are no truth event)."""
    try:
        h, p = ws_bin.message(bytes(wire))
    except (IndexError, ValueError, KeyError, AssertionError, UnicodeDecodeError, struct.error):
        return False
    return isinstance(h, dict) and isinstance(p, dict) and (h.get("op") == -1 or h.get("t") == "#info")


def records(path_or_bytes):
    """(src, recv, mark dict or None, wire bytes or None, envelope) of each record."""
    data = open(path_or_bytes, "rb").read() if isinstance(path_or_bytes, str) else bytes(path_or_bytes)
    out = []
    i = 0
    while i < len(data):
        n, shift = 0, 0
        while True:
            c = data[i]
            i += 1
            n |= (c & 0x7f) << shift
            shift += 7
            if not c & 0x80:
                break
        end = i + n
        major, count, j = _head(data, i)
        assert major == 5, "an envelope is a map"
        env = {}
        for _ in range(count):
            kmaj, klen, j = _head(data, j)
            key = data[j:j + klen].decode()
            j += klen
            if key == "wire":
                vmaj, vlen, j = _head(data, j)
                env[key] = data[j:j + vlen]
                j += vlen
            else:
                v, j = ws_bin.cbor(data, j)
                env[key] = v
        assert j == end, "envelope length mismatch"
        i = end
        out.append((env["src"], env.get("recv", 0), env.get("mark"), env.get("wire"), env))
    return out


# ---- the verdict ------------------------------------------------------------------------------

class Verdict:
    def __init__(self, src, out_src):
        self.src, self.out_src = src, out_src
        self.truth = self.present = self.control = self.connections = self.gaps = 0
        self.excused = self.lost = self.duplicates = self.outside = self.disorder = 0
        self.problems = []
        self.ok = True

    def fail(self, kind, text):
        self.ok = False
        if len(self.problems) < 12:
            self.problems.append("%s: %s" % (kind, text))

    def line(self):
        return ("%s %s: %d truth events, %d written, %d excused (not observed), %d lost, %d duplicates, "
                "%d outside the truth, %d out of order; %d connections, %d gap markers, %d control messages" % (
                    "ok  " if self.ok else "FAIL", self.src if self.src == self.out_src else
                    "%s (as %s)" % (self.src, self.out_src), self.truth, self.present, self.excused, self.lost,
                    self.duplicates, self.outside, self.disorder, self.connections, self.gaps, self.control))


class _Conn:
    def __init__(self, start, cursor):
        self.start, self.end, self.cursor = start, None, cursor
        self.idx = []    # truth indexes delivered, in order
        self.gaps = []   # (from, to)
        self.last_recv = start


def score_source(tev, orecs, src, out_src, slack_us, complete):
    """tev: [(recv, seq, wire)] of the truth source in emission order; orecs: the output's
    records of the source (records() tuples), in output order."""
    v = Verdict(src, out_src)
    v.truth = len(tev)
    by_wire = {}
    epoch, epochs, prev = 0, [], None
    for i, (_, s, w) in enumerate(tev):
        if s is not None and prev is not None and s <= prev:
            epoch += 1
        prev = s if s is not None else prev
        epochs.append(epoch)
        if w in by_wire:
            v.fail("truth", "two truth events with the same wire bytes (index %d and %d)" % (by_wire[w], i))
        by_wire[w] = i
    conns, cur = [], None
    seen = {}
    order_last = -1
    for _, recv, mark, wire, _ in orecs:
        kind = mark.get("kind") if isinstance(mark, dict) else None
        if cur is not None:
            cur.last_recv = max(cur.last_recv, recv)
        if kind == "connect":
            if cur is not None:  # no disconnect (a killed tap): ended at its last record
                cur.end = cur.last_recv
            cur = _Conn(recv, mark.get("cursor"))
            conns.append(cur)
            continue
        if kind == "disconnect":
            if cur is None:
                v.fail("markers", "a disconnect marker with no connection open (recv %d)" % recv)
            else:
                cur.end = recv
                cur = None
            continue
        if kind == "gap":
            v.gaps += 1
            if cur is None:
                v.fail("markers", "a gap marker outside a connection (recv %d)" % recv)
            else:
                cur.gaps.append((mark.get("from"), mark.get("to")))
            continue
        if kind is not None:  # idle and future kinds
            continue
        s = seq_of(wire) if wire is not None else None
        if cur is None:
            v.outside += 1
            v.fail("outside", "a message (seq %s) outside every connection (recv %d)" % (s, recv))
            continue
        if s is None:
            if is_control(wire):
                v.control += 1
            else:
                v.outside += 1
                v.fail("outside", "a message with no seq that is no #info or error frame (recv %d)" % recv)
            continue
        i = by_wire.get(bytes(wire))
        if i is None:
            v.outside += 1
            v.fail("outside", "seq %d (recv %d) is no truth event of %s" % (s, recv, src))
            continue
        if i in seen:
            v.duplicates += 1
            v.fail("duplicate", "seq %d (truth index %d) written again" % (s, i))
            continue
        seen[i] = cur
        if i < order_last:
            v.disorder += 1
            v.fail("order", "seq %d (truth index %d) after truth index %d" % (s, i, order_last))
        order_last = max(order_last, i)
        cur.idx.append(i)
    if cur is not None:
        cur.end = cur.last_recv
    v.connections = len(conns)
    v.present = len(seen)

    def in_gap(c, i):
        s = tev[i][1]
        return s is not None and any(a is not None and b is not None and a <= s <= b for a, b in c.gaps)

    times = [t for t, _, _ in tev]
    times_sorted = all(a <= b for a, b in zip(times, times[1:]))
    required = {}  # truth index -> why it had to be written
    for k, c in enumerate(conns):
        if c.idx:
            first, last = c.idx[0], c.idx[-1]
            for i in range(first + 1, last):
                if i not in seen and not in_gap(c, i):
                    required.setdefault(i, "between two events of connection %d" % (k + 1))
            e = epochs[first]
            for i in range(first - 1, -1, -1):
                if epochs[i] != e:
                    break
                if c.cursor is not None:
                    if tev[i][1] is None or tev[i][1] <= c.cursor:
                        break
                elif tev[i][0] < c.start:
                    break
                if i not in seen and not in_gap(c, i):
                    required.setdefault(i, "after the connect (cursor %s) of connection %d, before its first event" % (
                        c.cursor, k + 1))
        lo = bisect.bisect_left(times, c.start) if times_sorted else 0
        hi = bisect.bisect_right(times, c.end - slack_us) if times_sorted else len(tev)
        for i in range(lo, hi):
            t = tev[i][0]
            if c.start <= t <= c.end - slack_us and i not in seen and not in_gap(c, i):
                # In another connection's gap (a replay after OutdatedCursor) it was said so.
                if not any(in_gap(o, i) and (not o.idx or epochs[o.idx[0]] == epochs[i]) for o in conns):
                    required.setdefault(i, "emitted while connection %d was open, %.1f s before it ended" % (
                        k + 1, (c.end - t) / 1e6))
    for i in range(len(tev)):
        if i in seen:
            continue
        if i in required:
            v.lost += 1
            v.fail("lost", "seq %s (truth index %d, epoch %d, emitted %d): %s" % (
                tev[i][1], i, epochs[i], tev[i][0], required[i]))
        else:
            v.excused += 1
            if complete:
                v.fail("missing", "seq %s (truth index %d) is not in the output (--complete)" % (tev[i][1], i))
    return v


def score(truth, outputs, mapping=None, only=None, slack=5.0, complete=False):
    """{truth src: Verdict}. truth: a path; outputs: paths (or bytes) in the order written."""
    mapping = dict(mapping or {})
    tev = {}
    for src, recv, mark, wire, env in records(truth):
        if mark is None and wire is not None:
            tev.setdefault(src, []).append((recv, seq_of(wire), bytes(wire)))
    orecs = {}
    for o in outputs:
        for r in records(o):
            orecs.setdefault(r[0], []).append(r)
    if only:
        srcs = list(only)
    else:
        srcs = [s for s in tev if s != "dropped.relay.test" and (s != "relay.test" or s in mapping)]
    out = {}
    for s in sorted(srcs):
        out_src = mapping.get(s, s)
        out[s] = score_source(tev.get(s, []), orecs.get(out_src, []), s, out_src, int(slack * 1e6), complete)
    # Output sources no truth source explains: everything in them is outside the truth.
    known = {mapping.get(s, s) for s in tev}
    for s, rs in orecs.items():
        if s not in known and any(r[2] is None for r in rs):
            v = Verdict(s, s)
            v.outside = sum(1 for r in rs if r[2] is None)
            v.fail("outside", "%d messages from a src the truth does not have" % v.outside)
            out["(output) " + s] = v
    return out


def main(argv):
    mapping, only, paths, slack, complete, verbose, cvl_cat = {}, [], [], 5.0, False, False, "cvl-cat"
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--map":
            k, _, val = argv[i + 1].partition("=")
            mapping[k] = val
            i += 1
        elif a == "--only":
            only.append(argv[i + 1])
            i += 1
        elif a == "--slack":
            slack = float(argv[i + 1])
            i += 1
        elif a == "--cvl-cat":
            cvl_cat = argv[i + 1]
            i += 1
        elif a == "--complete":
            complete = True
        elif a == "-v":
            verbose = True
        else:
            paths.append(a)
        i += 1
    if len(paths) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    outputs = []
    for p in paths[1:]:
        if os.path.isdir(p):  # an archive: its frames, markers included, in ordinal order
            import subprocess
            r = subprocess.run([cvl_cat, "-q", p], capture_output=True)
            if r.returncode != 0:
                print("score.py: %s: cvl-cat failed (%d): %s" % (p, r.returncode, r.stderr.decode().strip()),
                      file=sys.stderr)
                return 2
            outputs.append(r.stdout)
        else:
            outputs.append(p)
    res = score(paths[0], outputs, mapping, only, slack, complete)
    for s, v in res.items():
        print(v.line())
        if not v.ok or verbose:
            for p in v.problems:
                print("    " + p)
    return 0 if all(v.ok for v in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
