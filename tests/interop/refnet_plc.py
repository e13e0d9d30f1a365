#!/usr/bin/env python3
"""plc-sync against the reference PLC directory (@did-plc/server from the npm registry).

usage: refnet_plc.py BUILD_DIR SOURCE_DIR REFNET_RESULTS_DIR

Starts a private PostgreSQL cluster and the reference PLC server on 127.0.0.1 (the PostgreSQL
backend is the only one that serves GET /export), replays into it, through its own POST /<did>
(which validates every op), the PLC operations of a reference-network run
(REFNET_RESULTS_DIR/plc-export.jsonl: real ops made by reference PDSes: account creations,
a handle change, a PDS migration that rotated a signing key), then:
  * plc-sync -o MIRROR --url http://127.0.0.1:PORT mirrors it: exit 0, every op accepted;
  * every DID's state in the mirror (plc-sync lookup) equals the server's own
    GET /<did>/data: signing key, PDS endpoint, handle; and GET /<did> is not 404;
  * the mirror's export chunks (zstd -dc MIRROR/export/*) are the server's export, line for line,
    byte for byte;
  * a second run fetches the boundary again, adds nothing and exits 0;
  * ops posted after the first sync are picked up by the next run (incremental paging).
Needs node + npm (installs tests/interop/plc/package-lock.json into BUILD_DIR/interop-plc) and
PostgreSQL run as root (to switch to the postgres user); without them it skips (exit 77) and
says why. Prints "ok - ..." / "FAIL - ..." lines; exit 1 on any failure.
"""
import glob, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request

build, source, results = (os.path.abspath(a) for a in sys.argv[1:4])
export_file = os.path.join(os.environ.get('SOVEREIGN_REFNET') or results, 'plc-export.jsonl')
PLC_SYNC = os.path.join(build, 'tools', 'plc-sync')
passed = failed = 0


def skip(why):
    print('SKIP: ' + why)
    sys.exit(77)


def check(name, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
        print('ok - ' + name)
    else:
        failed += 1
        print('FAIL - ' + name + (('\n    ' + str(detail)[:2000]) if detail else ''))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, limit_s=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if proc.poll() is not None:
            raise SystemExit('FAIL - %s exited %d before listening' % (what, proc.returncode))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit('FAIL - %s did not listen on %d in %d s' % (what, port, limit_s))


if not os.path.isfile(export_file):
    skip('no reference-network PLC export at %s' % export_file)
for tool in ('node', 'npm'):
    if not shutil.which(tool):
        skip('%s is not installed (apt-get install nodejs npm)' % tool)
pg_bins = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
if not pg_bins:
    skip('PostgreSQL is not installed (apt-get install postgresql)')
if os.geteuid() != 0:
    skip('not root: cannot run PostgreSQL as the postgres user')
pg_bin = os.path.dirname(pg_bins[-1])

# The reference server's packages, pinned by our lock file, installed once per build dir.
pkg_dir = os.path.join(build, 'interop-plc')
os.makedirs(pkg_dir, exist_ok=True)
src_pkg = os.path.join(source, 'tests', 'interop', 'plc')
lock = open(os.path.join(src_pkg, 'package-lock.json'), 'rb').read()
stamp = os.path.join(pkg_dir, 'node_modules', '.sovereign-lock')
for f in ('package.json', 'package-lock.json', 'plc-server.mjs'):
    shutil.copyfile(os.path.join(src_pkg, f), os.path.join(pkg_dir, f))
if not os.path.isfile(stamp) or open(stamp, 'rb').read() != lock:
    print('# npm ci of @did-plc/server in %s' % pkg_dir, flush=True)
    r = subprocess.run(['npm', 'ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd=pkg_dir,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit('FAIL - npm ci: ' + r.stderr[-2000:])
    open(stamp, 'wb').write(lock)

work = tempfile.mkdtemp(prefix='sovereign-refnet-plc-')
procs = []


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(work, ignore_errors=True)


def http(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method, headers={'content-type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def sync(mirror, url, *extra):
    return subprocess.run([PLC_SYNC, '-o', mirror, '--url', url] + list(extra), capture_output=True, text=True,
                          timeout=600)


def lookup(mirror, dids):
    r = subprocess.run([PLC_SYNC, 'lookup', '-o', mirror] + dids, capture_output=True, text=True, timeout=120)
    found = {}
    for l in r.stdout.splitlines():
        if l.strip():
            j = json.loads(l)
            if j.get('found'):
                found[j['did']] = j
    return r.returncode, found, r.stderr


try:
    pg_data = os.path.join(work, 'pg')
    os.makedirs(pg_data)
    shutil.chown(work, 'postgres', 'postgres')
    shutil.chown(pg_data, 'postgres', 'postgres')
    as_pg = ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups']
    subprocess.run(as_pg + [pg_bin + '/initdb', '-D', pg_data + '/data', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8',
                            '--no-sync'], check=True, capture_output=True)
    pg_port = free_port()
    pg = subprocess.Popen(as_pg + [pg_bin + '/postgres', '-D', pg_data + '/data', '-p', str(pg_port), '-k', pg_data,
                                   '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, 'pg.log'), 'w'))
    procs.append(pg)
    wait_port(pg_port, pg, 'postgres')
    plc_port = free_port()
    plc = subprocess.Popen(['node', 'plc-server.mjs', str(plc_port), 'postgres://postgres@127.0.0.1:%d/postgres' % pg_port],
                           cwd=pkg_dir, stdout=subprocess.PIPE, stderr=open(os.path.join(work, 'plc.log'), 'w'), text=True)
    procs.append(plc)
    line = plc.stdout.readline()
    if not line.startswith('READY'):
        raise SystemExit('FAIL - the reference PLC server did not start: ' + open(os.path.join(work, 'plc.log')).read()[-2000:])
    base = 'http://127.0.0.1:%d' % plc_port

    # Replay the reference network's ops; hold back the last few for the incremental run.
    ops = [json.loads(l) for l in open(export_file) if l.strip()]
    first, later = ops[:-5], ops[-5:]
    refused = [(o['cid'], http('POST', base + '/' + o['did'], json.dumps(o['operation']).encode())) for o in first]
    refused = [(c, s, b[:200]) for c, (s, b) in refused if s != 200]
    check('the reference server accepts every replayed op (%d)' % len(first), not refused, refused)

    mirror = os.path.join(work, 'mirror')
    r = sync(mirror, base)
    check('plc-sync --url against the reference server: exit 0', r.returncode == 0, r.stderr)
    check('plc-sync summary: every op accepted, none rejected',
          ('%d accepted, 0 rejected' % len(first)) in r.stderr, r.stderr)

    def agree(dids, label):
        rc, got, err = lookup(mirror, dids)
        check('plc-sync lookup of every DID %s: exit 0' % label, rc == 0, err)
        mismatches = []
        for did in dids:
            st, body = http('GET', base + '/' + did + '/data')
            if st != 200:
                if st == 410 and did in got and got[did].get('tombstoned'):
                    continue  # tombstoned on both sides
                mismatches.append((did, 'server answered %d, mirror %s' % (st, got.get(did))))
                continue
            data = json.loads(body)
            m = got.get(did)
            if not m:
                mismatches.append((did, 'missing from the mirror'))
                continue
            want_key = data.get('verificationMethods', {}).get('atproto', '')
            have_key = m.get('key') or ''
            want_pds = data.get('services', {}).get('atproto_pds', {}).get('endpoint', '')
            aka = [a[5:] for a in data.get('alsoKnownAs', []) if a.startswith('at://')]
            want = (want_key, want_pds, aka[0] if aka else '')
            have = (have_key, m.get('pds', ''), m.get('handle', ''))
            if want != have:
                mismatches.append((did, 'server %s, mirror %s' % (want, have)))
            st, _ = http('GET', base + '/' + did)
            if st != 200:
                mismatches.append((did, 'GET /<did> answered %d' % st))
        check('every DID %s agrees with the server (%d DIDs: key, PDS, handle)' % (label, len(dids)), not mismatches,
              mismatches)

    agree(sorted({o['did'] for o in first}), 'after the first sync')

    def server_export():
        lines, after = [], '0'
        while True:
            st, body = http('GET', base + '/export?after=%s&count=1000' % after)
            page = body.decode().split('\n') if body else []
            lines += page
            if len(page) < 1000:
                return lines
            after = json.loads(page[-1])['createdAt']

    def mirror_export():
        chunks = sorted(glob.glob(os.path.join(mirror, 'export', '*')))
        out = subprocess.run(['zstd', '-dc'] + chunks, capture_output=True, check=True).stdout
        return out.decode().split('\n')[:-1] if out else []

    check('zstd -dc MIRROR/export/* is the server export, byte for byte', mirror_export() == server_export())

    r = sync(mirror, base)
    check('a second run: exit 0, nothing new', r.returncode == 0 and ' 0 accepted' in r.stderr, r.stderr)
    time.sleep(0.01)
    for o in later:
        http('POST', base + '/' + o['did'], json.dumps(o['operation']).encode())
    r = sync(mirror, base)
    check('after %d more ops: the next run takes exactly them' % len(later),
          r.returncode == 0 and ('%d accepted, 0 rejected' % len(later)) in r.stderr, r.stderr)
    check('the export chunks still equal the server export', mirror_export() == server_export())
    agree(sorted({o['did'] for o in ops}), 'after the incremental sync')
finally:
    cleanup()

print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
