# A minimal WebSocket client for the command-line tests (python3's standard library has none):
# ws(port, path, want, timeout) connects to 127.0.0.1:port, reads text messages until a close
# frame, end of stream, or — once `want` messages arrived — `timeout` seconds without one.
# Returns (HTTP status of the upgrade, [messages], (close code, reason) or None).
import socket, base64, os, struct, sys, json
def ws(port, path, want=None, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d: return None, [], None
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ")[1])
    msgs, close = [], None
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = s.recv(65536)
            if not d: raise EOFError
            buf += d
    try:
        while True:
            if want is not None and len(msgs) >= want:
                s.settimeout(timeout)
            need(2)
            op, ln = buf[0] & 15, buf[1] & 127
            hl = 2
            if ln == 126: need(4); ln = struct.unpack(">H", buf[2:4])[0]; hl = 4
            elif ln == 127: need(10); ln = struct.unpack(">Q", buf[2:10])[0]; hl = 10
            need(hl + ln)
            payload, buf = buf[hl:hl + ln], buf[hl + ln:]
            if op == 1: msgs.append(payload.decode())
            elif op == 8:
                close = (struct.unpack(">H", payload[:2])[0], payload[2:].decode()) if len(payload) >= 2 else (None, "")
                break
    except (EOFError, socket.timeout):
        pass
    s.close()
    return status, msgs, close
