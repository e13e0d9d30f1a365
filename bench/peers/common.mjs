// Shared harness for the peer verifiers (verify-atproto.mjs, verify-atcute.mjs).
//
// Only plumbing lives here: argument parsing, reading the frame stream (docs/format-frame-stream.md),
// reading the DID documents, and the timing loop. Everything that verifies a commit (CBOR decoding of
// envelope and wire, CAR, CIDs, signatures, MST) is done by the peer's own libraries in the peer script.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export function usage(peer) {
  return `usage: node verify-${peer}.mjs FRAMES_FILE DID_DOCS_JSON[.zst] [--seconds S] [--warmup S]`;
}

export function parseArgs(peer, argv) {
  const pos = [];
  let seconds = 3;
  let warmup = 1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--seconds' || a === '--warmup') {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) fail(peer, `${a} needs a non-negative number`);
      if (a === '--seconds') seconds = v;
      else warmup = v;
    } else if (a === '-h' || a === '--help') {
      process.stdout.write(usage(peer) + '\n');
      process.exit(0);
    } else if (a.startsWith('--')) {
      fail(peer, `unknown option ${a}\n${usage(peer)}`);
    } else {
      pos.push(a);
    }
  }
  if (pos.length !== 2) fail(peer, usage(peer));
  return { framesFile: pos[0], docsFile: pos[1], seconds, warmup };
}

export function fail(peer, msg) {
  process.stderr.write(`verify-${peer}: ${msg}\n`);
  process.exit(2);
}

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

function isZstd(buf) {
  return buf.length >= 4 && ZSTD_MAGIC.every((b, i) => buf[i] === b);
}

// Reads a file, decompressing it with the zstd command-line tool if it starts with the zstd magic.
export function readMaybeZstd(path) {
  const raw = readFileSync(path);
  if (!isZstd(raw)) return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = execFileSync('zstd', ['-dc', '--', path], { maxBuffer: 2 ** 32 });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

// Splits a frame stream into envelope byte ranges: uvarint(n) envelope, repeated (no stream header).
export function* splitFrames(buf) {
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    let n = 0;
    let shift = 0;
    for (let i = 0; ; i++) {
      if (i === 4) throw new Error(`frame stream: offset ${start}: record longer than 16 MiB`);
      if (pos >= buf.length) throw new Error(`frame stream: offset ${start}: truncated input`);
      const b = buf[pos++];
      n += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw new Error(`frame stream: offset ${start}: varint not minimally encoded`);
        break;
      }
    }
    if (n === 0) throw new Error(`frame stream: offset ${start}: record length 0`);
    if (n > 16 * 1024 * 1024) throw new Error(`frame stream: offset ${start}: record longer than 16 MiB`);
    if (pos + n > buf.length) throw new Error(`frame stream: offset ${start}: truncated input`);
    yield { offset: start, envelope: buf.subarray(pos, pos + n) };
    pos += n;
  }
}

// Returns [{did, vm}] pairs: the first verificationMethod whose id ends in '#atproto' (docs/protocol.md §5).
export function loadDidDocs(path) {
  const text = new TextDecoder().decode(readMaybeZstd(path));
  const docs = JSON.parse(text);
  if (docs === null || typeof docs !== 'object' || Array.isArray(docs)) {
    throw new Error(`${path}: expected a JSON object DID -> DID document`);
  }
  const out = [];
  for (const [did, doc] of Object.entries(docs)) {
    const vms = Array.isArray(doc?.verificationMethod) ? doc.verificationMethod : [];
    const vm = vms.find(
      (m) =>
        typeof m?.id === 'string' &&
        m.id.endsWith('#atproto') &&
        (m.id === '#atproto' || m.id === `${did}#atproto`) &&
        typeof m.publicKeyMultibase === 'string' &&
        (m.controller === undefined || m.controller === did),
    );
    if (vm) out.push({ did, vm });
  }
  return out;
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// commits: array of prepared items; verify(item) -> Promise<void>, throws on failure (message = reason).
// Pass 1 checks everything and reports failures; then warm-up; then the timed loop.
export async function runBench({ peer, commits, verify, describe, seconds, warmup, steps, versions }) {
  let ok = 0;
  const reasons = new Map();
  for (const item of commits) {
    try {
      await verify(item);
      ok++;
    } catch (err) {
      const reason = err?.message ?? String(err);
      process.stderr.write(`verify-${peer}: ${describe(item)}: FAIL: ${reason}\n`);
      const key = reason.replace(/[a-z0-9]{40,}/g, '…');
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
  }
  if (ok !== commits.length) {
    const summary = [...reasons].map(([r, c]) => `${c}× ${r}`).join('; ');
    process.stderr.write(`verify-${peer}: ${commits.length - ok} of ${commits.length} commits failed: ${summary}\n`);
  }

  // Failures are swallowed in the timed loops so a failing commit costs what it costs (it was reported above).
  const once = async (item) => {
    try {
      await verify(item);
    } catch {}
  };
  let processed = 0;
  let elapsed = 0;
  if (commits.length > 0) {
    const w0 = performance.now();
    for (let i = 0; performance.now() - w0 < warmup * 1000; i = (i + 1) % commits.length) {
      await once(commits[i]);
    }
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    // commit by commit, cycling through the list, until the deadline (at least one commit)
    for (let i = 0; processed === 0 || performance.now() < deadline; i = (i + 1) % commits.length) {
      await once(commits[i]);
      processed++;
    }
    elapsed = (performance.now() - t0) / 1000;
  }
  const result = {
    peer,
    commits: commits.length,
    ok,
    commits_per_s: elapsed > 0 ? round(processed / elapsed, 1) : 0,
    steps,
    versions,
    timed_commits: processed,
    timed_seconds: round(elapsed, 3),
    node: process.version,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  return result;
}

// Versions of the named packages as installed in node_modules (read from their package.json).
export function installedVersions(names) {
  const out = {};
  for (const name of names) {
    try {
      const pj = JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url)));
      out[name] = pj.version;
    } catch {
      out[name] = null;
    }
  }
  return out;
}
