# A private nats-server for the tests (python3 standard library only): JetStream on, its store
# in a temporary directory, listening on a free loopback port, max_payload 8 MB (frames reach
# 5 MB), stopped and restarted on demand with the same store and port.
import os, shutil, socket, subprocess, time


def find_binary():
    """The nats-server executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NatsServer:
    """NatsServer(tmp).start() → self; .url ("nats://127.0.0.1:PORT"); .stop(kill=False);
    .restart(); the log in TMP/nats-N/server.log. Raises SystemExit when it does not come up."""

    def __init__(self, tmp, name="nats"):
        self.binary = find_binary()
        self.dir = os.path.join(tmp, name)
        os.makedirs(os.path.join(self.dir, "js"), exist_ok=True)
        self.port = free_port()
        self.url = "nats://127.0.0.1:%d" % self.port
        self.proc = None
        self.log = os.path.join(self.dir, "server.log")
        with open(os.path.join(self.dir, "server.conf"), "w") as f:
            f.write('listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream { store_dir: "%s" }\n'
                    % (self.port, os.path.join(self.dir, "js")))

    def start(self, limit=60):
        if not self.binary:
            raise SystemExit("nats-server is not installed (scripts/setup.sh installs it)")
        self.proc = subprocess.Popen([self.binary, "-c", os.path.join(self.dir, "server.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        end = time.time() + limit
        while time.time() < end:
            if self.proc.poll() is not None:
                raise SystemExit("nats-server exited: " + open(self.log).read()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("nats-server did not come up in %d s: %s" % (limit, open(self.log).read()[-2000:]))

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, kill=False):
        self.stop(kill)
        return self.start()


def request(url, subject, payload=b"", limit=60):
    """A NATS request over a plain socket (the protocol by hand, one connection each):
    publishes `payload` (bytes, or a dict sent as JSON) on `subject` with a reply inbox and
    returns the reply's payload — a JetStream API answer, or a stream's publish acknowledgement
    — or None when no one answers (no responders). Raises OSError on -ERR or a closed socket."""
    import json
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    host, port = url[len("nats://"):].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=limit)
    try:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'
                  b"SUB _INBOX.test 1\r\n"
                  + b"PUB %s _INBOX.test %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = f.readline()
            if not line:
                raise OSError("nats-server closed the test's connection")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise OSError("nats-server: " + line.decode().strip())
            elif line.startswith(b"MSG "):
                n = int(line.split()[-1])
                return f.read(n + 2)[:n]
            elif line.startswith(b"HMSG "):  # headers only: a status, 503 = no responders
                parts = line.split()
                hlen, total = int(parts[-2]), int(parts[-1])
                data = f.read(total + 2)[:total]
                if b"503" in data[:hlen].split(b"\r\n")[0]:
                    return None
                return data[hlen:]
    finally:
        s.close()


def js(url, api, body=None):
    """A JetStream API request ($JS.API.<api>), its JSON answer as a dict. Raises OSError when no
    one answers."""
    import json
    r = request(url, "$JS.API." + api, body or b"")
    if r is None:
        raise OSError("no answer to $JS.API." + api)
    return json.loads(r)
