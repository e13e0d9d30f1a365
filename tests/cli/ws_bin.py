# Helpers for the command-line tests of `mesh-sim serve --pdses` (python3 standard library
# only): a WebSocket client that keeps binary messages and tells a close frame from a plain
# end of stream, a minimal DAG-CBOR decoder, event-stream message and frame-stream readers.
import base64, os, socket, struct, time


def connect(port, path, host="127.0.0.1", rcvbuf=None):
    """Upgrades GET `path`; returns (socket, HTTP status, bytes already read past the headers,
    {lower-case header name: value})."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(60)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            return s, None, b"", {}
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return s, int(lines[0].split(" ")[1]), rest, headers


class Stream:
    """Reads WebSocket messages. `end` after read(): 'close' (with close_code, close_reason),
    'eof' (the connection ended with no close frame), 'reset', or 'quiet' (no message for
    `quiet` seconds once `want` messages arrived, or `deadline` passed)."""

    def __init__(self, port, path, host="127.0.0.1", rcvbuf=None):
        self.sock, self.status, self.buf, self.headers = connect(port, path, host, rcvbuf)
        self.messages = []  # binary payloads
        self.end = None
        self.close_code = None
        self.close_reason = None

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(1 << 16)
            if not d:
                raise EOFError
            self.buf += d

    def read(self, want=None, quiet=3.0, deadline=60.0):
        stop_at = time.time() + deadline
        try:
            while True:
                if time.time() > stop_at:
                    self.end = "quiet"
                    return self
                self.sock.settimeout(quiet if want is not None and len(self.messages) >= want else
                                     max(0.1, stop_at - time.time()))
                self._need(2)
                op, ln = self.buf[0] & 15, self.buf[1] & 127
                hl = 2
                if ln == 126:
                    self._need(4)
                    ln = struct.unpack(">H", self.buf[2:4])[0]
                    hl = 4
                elif ln == 127:
                    self._need(10)
                    ln = struct.unpack(">Q", self.buf[2:10])[0]
                    hl = 10
                self._need(hl + ln)
                payload, self.buf = self.buf[hl:hl + ln], self.buf[hl + ln:]
                if op in (1, 2):
                    self.messages.append(bytes(payload))
                elif op == 8:
                    self.end = "close"
                    if len(payload) >= 2:
                        self.close_code = struct.unpack(">H", payload[:2])[0]
                        self.close_reason = payload[2:].decode()
                    return self
        except EOFError:
            self.end = "eof"
        except ConnectionResetError:
            self.end = "reset"
        except socket.timeout:
            self.end = "quiet"
        return self

    def close(self):
        self.sock.close()


def cbor(b, i=0):
    """Decodes one DAG-CBOR item at b[i:]; returns (value, next index). Links become ('link', bytes)."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        n = info
    elif info == 24:
        n = b[i]; i += 1
    elif info == 25:
        n = struct.unpack(">H", b[i:i + 2])[0]; i += 2
    elif info == 26:
        n = struct.unpack(">I", b[i:i + 4])[0]; i += 4
    elif info == 27:
        n = struct.unpack(">Q", b[i:i + 8])[0]; i += 8
    else:
        raise ValueError("bad additional info")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2:
        return bytes(b[i:i + n]), i + n
    if major == 3:
        return b[i:i + n].decode(), i + n
    if major == 4:
        out = []
        for _ in range(n):
            v, i = cbor(b, i)
            out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = cbor(b, i)
            v, i = cbor(b, i)
            out[k] = v
        return out, i
    if major == 6:
        v, i = cbor(b, i)
        return ("link", v), i
    if major == 7:
        return {20: False, 21: True, 22: None}[info], i
    raise ValueError("bad major type")


def message(wire):
    """(header, payload) of an event-stream message."""
    h, i = cbor(wire)
    p, j = cbor(wire, i)
    assert j == len(wire), "trailing bytes after the payload"
    return h, p


def without_seq(wire):
    """The message with its seq removed: what a relay must keep of a PDS's event."""
    h, p = message(wire)
    p = dict(p)
    p.pop("seq", None)
    return repr((h, sorted(p.items())))


def uvarint(b, i=0):
    """The unsigned varint at b[i:] (a frame record's length, a CAR header's): (value, index
    after it), or (None, i) when the bytes end inside it."""
    n, shift, j = 0, 0, i
    while j < len(b):
        c = b[j]
        j += 1
        n |= (c & 0x7f) << shift
        shift += 7
        if not c & 0x80:
            return n, j
    return None, i


def complete_prefix(data):
    """The length of the complete records at the start of frame-stream bytes (a file still being
    written may end inside a record)."""
    i = 0
    while i < len(data):
        n, j = uvarint(data, i)
        if n is None or j + n > len(data):
            break
        i = j + n
    return i


def car_root(car):
    """The first root CID (binary, without the 0x00 prefix) of a CAR's header."""
    n, i = uvarint(car)
    header, _ = cbor(car[i:i + n])
    return bytes(header["roots"][0][1])[1:]


def records(data):
    """(start, end, envelope dict) of each record of frame-stream bytes."""
    i = 0
    while i < len(data):
        start = i
        n, i = uvarint(data, i)
        env, j = cbor(data, i)
        assert j == i + n, "envelope length mismatch"
        i += n
        yield start, i, env


def frames(path):
    """The envelopes (dicts) of a frame-stream file."""
    return [env for _, _, env in records(open(path, "rb").read())]


def truth_by_src(path):
    """{src: [envelope, …]} of a frame-stream file (e.g. mesh-sim's truth file)."""
    out = {}
    for env in frames(path):
        out.setdefault(env["src"], []).append(env)
    return out


def messages(envs):
    """The envelopes that are messages, not markers."""
    return [e for e in envs if "mark" not in e]


def seq_of(env):
    """The seq of an envelope's message."""
    return message(env["wire"])[1].get("seq")


def split_by_src(path):
    """{src: raw frame-stream bytes of that src's records} of a frame-stream file."""
    data = open(path, "rb").read()
    out = {}
    for start, end, env in records(data):
        out.setdefault(env["src"], bytearray()).extend(data[start:end])
    return out


def start_sim(mesh_sim, tmp, name, *args):
    """Starts `mesh-sim serve --no-corpus --listen 127.0.0.1:0 ARGS` (stderr in TMP/NAME.err)
    and waits for its "serving" line; returns (process, port)."""
    import subprocess
    err = open(os.path.join(tmp, name + ".err"), "w+")
    p = subprocess.Popen([mesh_sim, "serve", "--no-corpus", "--listen", "127.0.0.1:0"] + list(args),
                         stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(6000):
        err.seek(0)
        for line in err.read().splitlines():
            if line.startswith("mesh-sim: serving") and "://127.0.0.1:" in line:  # http or https (--tls)
                return p, int(line.split("://127.0.0.1:")[1].split()[0].split("/")[0].rstrip(")"))
        if p.poll() is not None:
            break
        time.sleep(0.1)
    err.seek(0)
    raise SystemExit("mesh-sim did not start: " + err.read())
