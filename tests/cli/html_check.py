#!/usr/bin/env python3
"""Renders an HTML file in headless Chromium and checks it (ghost-diff's --report).

  html_check.py HTML [--expect ID=TEXT]... [--present ID]... [--screenshot PNG]
                [--window-size W,H] [--chromium PATH]

Checks, one "ok - ..." / "FAIL - ..." line each:
  * Chromium renders the file (--dump-dom) and the rendered DOM has, for each --expect, an
    element with that id whose text (whitespace collapsed) is TEXT; for each --present, an
    element with that id;
  * the DOM references nothing to load: no script, img, link, iframe, object, embed, media or
    SVG image/use element, no src/srcset/href/poster/data attribute, no url( or @import in any
    style (a missing local file is not in the network log, so this is checked in the DOM);
  * Chromium's network log (--log-net-log, names resolved to nothing by --host-resolver-rules)
    has no request made for the page: requests whose network isolation key is the file://
    page's (the browser's own background requests, e.g. its updater, are not the page's);
  * with --screenshot: Chromium writes a PNG of the window size (default 1280,2000) that is
    valid (signature, chunk CRCs, IHDR, the image data inflates to its exact size) and not
    trivial (at least 50 distinct scanlines).
Exit 0 when everything passed, 1 when something failed, 2 on a usage error, 77 (skip) when no
Chromium is installed (Debian package chromium). Each Chromium run may take up to 10 minutes
(a limit that only catches a hang), in a temporary profile directory removed afterwards.
"""
import argparse
import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks  # noqa: E402

LIMIT = 600
RESOURCE_TAGS = {"script", "img", "link", "iframe", "frame", "object", "embed", "video", "audio", "source",
                 "track", "image", "use", "feimage", "input", "picture", "portal", "base"}
RESOURCE_ATTRS = {"src", "srcset", "href", "xlink:href", "poster", "data", "background", "action", "formaction",
                  "ping", "manifest"}


class Dom(html.parser.HTMLParser):
    """Text of every element with an id (descendants' text, whitespace collapsed), and every
    reference to something loadable."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []          # [tag, id or None]
        self.text = {}           # id -> list of text pieces
        self.refs = []           # what would load something
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        self._open(tag, attrs, self_closing=tag in self.VOID)

    def handle_startendtag(self, tag, attrs):
        self._open(tag, attrs, self_closing=True)

    def _open(self, tag, attrs, self_closing):
        tag = tag.lower()
        if tag in RESOURCE_TAGS:
            self.refs.append("<%s> element" % tag)
        for name, value in attrs:
            name = name.lower()
            if name in RESOURCE_ATTRS:
                self.refs.append("%s=%r on <%s>" % (name, value, tag))
            if name == "style" and value and ("url(" in value.lower() or "@import" in value.lower()):
                self.refs.append("url( or @import in the style of <%s>" % tag)
        ident = dict(attrs).get("id")
        if ident is not None:
            self.text.setdefault(ident, [])
        if tag == "style":
            self.in_style = True
        if not self_closing:
            self.stack.append((tag, ident))

    def handle_endtag(self, tag):
        tag = tag.lower()
        if tag == "style":
            self.in_style = False
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self.in_style:
            low = data.lower()
            if "url(" in low or "@import" in low:
                self.refs.append("url( or @import in a <style> element")
            return
        for _, ident in self.stack:
            if ident is not None:
                self.text[ident].append(data)

    def text_of(self, ident):
        if ident not in self.text:
            return None
        return " ".join("".join(self.text[ident]).split())


def find_chromium(given):
    if given:
        return given if shutil.which(given) else None
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(chromium, tmp, tag, url, extra):
    """Runs one headless Chromium; returns (exit status or None on timeout, stdout, stderr, net log path)."""
    profile = os.path.join(tmp, "profile-" + tag)
    netlog = os.path.join(tmp, "netlog-%s.json" % tag)
    env = dict(os.environ, HOME=tmp, XDG_CONFIG_HOME=os.path.join(tmp, "config"),
               XDG_CACHE_HOME=os.path.join(tmp, "cache"))
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
           "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--no-default-browser-check",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--hide-scrollbars", "--log-net-log=" + netlog] + extra + [url]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=LIMIT)
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or b"", e.stderr or b"", netlog
    return p.returncode, p.stdout, p.stderr, netlog


def page_requests(netlog):
    """URLs requested on behalf of a file:// page, from Chromium's network log; None if unreadable."""
    try:
        with open(netlog, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        # Chromium may end the file without closing the event list; close it ourselves.
        try:
            with open(netlog, encoding="utf-8") as f:
                raw = f.read().rstrip().rstrip(",")
            d = json.loads(raw + "]}")
        except (OSError, ValueError):
            return None
    types = {v: k for k, v in d.get("constants", {}).get("logEventTypes", {}).items()}
    urls = []
    for e in d.get("events", []):
        if types.get(e.get("type")) != "URL_REQUEST_START_JOB":
            continue
        p = e.get("params", {})
        if "file://" in str(p.get("network_isolation_key", "")) or "file://" in str(p.get("site_for_cookies", "")):
            urls.append(p.get("url", "?"))
    return urls


def check_png(path, width, height):
    """'' when `path` is a valid, non-trivial PNG of width x height, else what is wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "cannot read: %s" % e
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "no PNG signature"
    pos, ihdr, idat, end = 8, None, b"", False
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if len(body) != n or pos + 12 + n > len(data):
            return "chunk %r truncated at byte %d" % (kind, pos)
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(kind + body) & 0xffffffff != crc:
            return "bad CRC in chunk %r at byte %d" % (kind, pos)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            end = True
            break
        pos += 12 + n
    if ihdr is None or not end:
        return "no IHDR or no IEND"
    w, h, depth, color = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
    if (w, h) != (width, height):
        return "size %dx%d, expected %dx%d" % (w, h, width, height)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or ihdr[6] != 0:
        return "unexpected format: depth %d, colour type %d, interlace %d" % (depth, color, ihdr[6])
    try:
        raw = zlib.decompress(idat)
    except zlib.error as e:
        return "image data does not inflate: %s" % e
    stride = 1 + w * channels
    if len(raw) != h * stride:
        return "image data is %d bytes, expected %d" % (len(raw), h * stride)
    rows = {raw[i:i + stride] for i in range(0, len(raw), stride)}
    if len(rows) < 50:
        return "only %d distinct rows: a blank page?" % len(rows)
    return ""


def main():
    ap = argparse.ArgumentParser(description="Render an HTML file in headless Chromium and check it.")
    ap.add_argument("html")
    ap.add_argument("--expect", action="append", default=[], metavar="ID=TEXT")
    ap.add_argument("--present", action="append", default=[], metavar="ID")
    ap.add_argument("--screenshot", metavar="PNG")
    ap.add_argument("--window-size", default="1280,2000", metavar="W,H")
    ap.add_argument("--chromium", metavar="PATH")
    a = ap.parse_args()
    expects = []
    for e in a.expect:
        if "=" not in e:
            ap.error("--expect %r: not ID=TEXT" % e)
        expects.append(tuple(e.split("=", 1)))
    try:
        width, height = (int(v) for v in a.window_size.split(","))
    except ValueError:
        ap.error("--window-size %r: not W,H" % a.window_size)
    if not os.path.isfile(a.html):
        print("html_check: %s: no such file" % a.html, file=sys.stderr)
        return 2
    chromium = find_chromium(a.chromium)
    if not chromium:
        print("SKIP - no Chromium to render with (install the Debian package chromium, or set CHROMIUM)")
        return 77

    c = Checks()
    url = "file://" + os.path.abspath(a.html)
    with tempfile.TemporaryDirectory(prefix="html_check.") as tmp:
        logs = []
        rc, out, err, netlog = run_chromium(chromium, tmp, "dom", url, ["--dump-dom"])
        logs.append(("--dump-dom", netlog))
        dom_text = out.decode("utf-8", "replace")
        if not c.check("chromium --dump-dom renders %s" % a.html, rc == 0 and "</html>" in dom_text,
                       "exit status %s" % ("timeout after %d s" % LIMIT if rc is None else rc),
                       err.decode("utf-8", "replace")[-1500:]):
            return c.summary()
        dom = Dom()
        dom.feed(dom_text)
        dom.close()
        for ident, want in expects:
            got = dom.text_of(ident)
            c.check("#%s reads %r" % (ident, want), got == want,
                    "no element with that id" if got is None else "it reads %r" % got)
        for ident in a.present:
            c.check("#%s is present" % ident, dom.text_of(ident) is not None, "no element with that id")
        c.check("the DOM references nothing to load", not dom.refs, *dom.refs[:20])

        if a.screenshot:
            shot = os.path.abspath(a.screenshot)
            if os.path.exists(shot):
                os.unlink(shot)
            rc, out, err, netlog = run_chromium(chromium, tmp, "png", url,
                                                ["--screenshot=" + shot, "--window-size=%d,%d" % (width, height)])
            logs.append(("--screenshot", netlog))
            problem = check_png(shot, width, height) if rc == 0 else "exit status %s" % (
                "timeout after %d s" % LIMIT if rc is None else rc)
            c.check("screenshot %s: a valid %dx%d PNG of the page (%d bytes)" % (
                a.screenshot, width, height, os.path.getsize(shot) if os.path.exists(shot) else 0),
                problem == "", problem, err.decode("utf-8", "replace")[-1500:] if rc != 0 else "")

        for what, path in logs:
            urls = page_requests(path)
            if urls is None:
                c.bad("network log of the %s run is readable" % what, path)
            else:
                c.check("no network request for the page (%s run)" % what, not urls, *urls[:20])
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
