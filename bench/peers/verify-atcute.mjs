#!/usr/bin/env node
// Peer verifier built on the @atcute/* packages (@atcute/cbor, @atcute/cid, @atcute/car, @atcute/crypto,
// @atcute/mst), as published on npm. See README.md.
//
// Per #commit message (inside the timed loop):
//   decode  header + payload with @atcute/cbor (decodeFirst, then decode: exactly two objects)
//   cid     @atcute/car fromUint8Array() parses the CAR (it does not hash); every block is re-hashed with
//           @atcute/cid create() and compared with its CID; roots[0] must equal msg.commit
//   commit  commit block present, @atcute/repo isCommit() (v3 shape); commit.did == msg.repo,
//           commit.rev == msg.rev
//   sig     PublicKey.verify(sig, dag-cbor(commit without sig)) from @atcute/crypto (k256 via node:crypto,
//           p256 via WebCrypto; low-S enforced). This is exactly what @atcute/repo's verifyRecord() does.
//   ops     @atcute/mst NodeWalker.findRpath(path) on the new commit's tree == op.cid for create/update,
//           == null for delete; duplicate paths rejected
//   inversion  @atcute/mst NodeWrangler on the same partial tree: create -> deleteRecord(path),
//           update/delete -> putRecord(path, prev); the resulting root CID must equal msg.prevData.
//           A node needed but not in the CAR raises MissingBlockError (= missing proof blocks).
//
// Public keys are imported once per DID when the DID documents are loaded (an identity cache), not per
// commit: @atcute/crypto's API separates import from verify.

import * as CAR from '@atcute/car';
import * as CBOR from '@atcute/cbor';
import * as CID from '@atcute/cid';
import { P256PublicKey, Secp256k1PublicKey, parsePublicMultikey } from '@atcute/crypto';
import { MemoryBlockStore, NodeStore, NodeWalker, NodeWrangler } from '@atcute/mst';
import { isCommit } from '@atcute/repo';
import { installedVersions, loadDidDocs, parseArgs, readMaybeZstd, runBench, splitFrames, fail } from './common.mjs';

const PEER = 'atcute';
const STEPS = 'cid,sig,ops,inversion';

function decodeWire(wire) {
  const [header, rest] = CBOR.decodeFirst(wire);
  const payload = CBOR.decode(rest); // throws on trailing bytes after the payload
  return [header, payload];
}

async function lookup(ns, root, path) {
  const node = await ns.get(root);
  if (node.isEmpty) return null;
  const walker = await NodeWalker.create(ns, root);
  return walker.findRpath(path);
}

async function verifyCommit(item, keys) {
  const [header, msg] = decodeWire(item.wire);
  if (header?.op !== 1 || header?.t !== '#commit') throw new Error('not a #commit message');
  const did = msg.repo;
  const key = keys.get(did);
  if (key === undefined) throw new Error(`no-key: no #atproto key for ${did}`);
  if (!CBOR.isBytes(msg.blocks)) throw new Error('blocks is not bytes');
  if (!Array.isArray(msg.ops)) throw new Error('ops is not an array');
  if (!CBOR.isCidLink(msg.commit)) throw new Error('commit is not a cid-link');

  // CAR: parse, hash every block
  const reader = CAR.fromUint8Array(CBOR.fromBytes(msg.blocks));
  const roots = reader.roots;
  if (roots.length < 1 || roots[0].$link !== msg.commit.$link) throw new Error('bad-car: roots[0] != msg.commit');
  const blocks = new Map();
  for (const entry of reader) {
    const actual = await CID.create(entry.cid.codec, entry.bytes);
    if (!CID.equals(actual, entry.cid)) throw new Error(`bad-cid: block ${CID.toString(entry.cid)} does not hash to its CID`);
    blocks.set(CID.toString(entry.cid), entry.bytes);
  }

  const commitBytes = blocks.get(msg.commit.$link);
  if (commitBytes === undefined) throw new Error('bad-car: commit block missing');
  const commit = CBOR.decode(commitBytes);
  if (!isCommit(commit)) throw new Error('bad-commit: not a v3 commit');
  if (commit.did !== did) throw new Error(`bad-commit: commit.did ${commit.did} != repo ${did}`);
  if (commit.rev !== msg.rev) throw new Error(`bad-commit: commit.rev ${commit.rev} != msg.rev ${msg.rev}`);

  const { sig, ...unsigned } = commit;
  if (!(await key.verify(CBOR.fromBytes(sig), CBOR.encode(unsigned)))) throw new Error('bad-sig: signature does not verify');

  // ops against the tree of the new commit
  const ns = new NodeStore(new MemoryBlockStore(blocks));
  const data = commit.data.$link;
  const seen = new Set();
  for (const op of msg.ops) {
    if (seen.has(op.path)) throw new Error(`bad-proof: duplicate op path ${op.path}`);
    seen.add(op.path);
    const found = await lookup(ns, data, op.path);
    if (op.action === 'delete') {
      if (found !== null) throw new Error(`bad-proof: deleted ${op.path} still in tree`);
    } else if (op.action === 'create' || op.action === 'update') {
      if (op.cid == null || found === null || found.$link !== op.cid.$link) {
        throw new Error(`bad-proof: ${op.action} ${op.path}: tree has ${found?.$link}, op says ${op.cid?.$link}`);
      }
    } else {
      throw new Error(`bad-proof: unknown op action ${op.action}`);
    }
  }

  // inversion back to prevData
  if (msg.prevData == null) throw new Error('bad-proof: no prevData, cannot invert');
  const sorted = [...msg.ops].sort((a, b) =>
    (a.action === 'delete') !== (b.action === 'delete') ? (a.action === 'delete' ? -1 : 1) : a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
  );
  const wrangler = new NodeWrangler(ns);
  let root = data;
  for (const op of sorted) {
    if (op.action === 'create') {
      root = await wrangler.deleteRecord(root, op.path);
    } else {
      if (op.prev == null) throw new Error(`bad-proof: ${op.action} ${op.path} without prev`);
      root = await wrangler.putRecord(root, op.path, op.prev);
    }
  }
  if (root !== msg.prevData.$link) throw new Error(`bad-proof: inverted root ${root} != prevData ${msg.prevData.$link}`);
}

async function importKey(multikey) {
  const found = parsePublicMultikey(multikey);
  if (found.type === 'secp256k1') return Secp256k1PublicKey.importRaw(found.publicKeyBytes);
  if (found.type === 'p256') return P256PublicKey.importRaw(found.publicKeyBytes);
  throw new Error(`unsupported key type ${found.type}`);
}

async function main() {
  const args = parseArgs(PEER, process.argv.slice(2));

  const keys = new Map();
  for (const { did, vm } of loadDidDocs(args.docsFile)) {
    if (vm.type !== 'Multikey') continue; // Multikey form only, like verify-atproto.mjs
    try {
      keys.set(did, await importKey(vm.publicKeyMultibase));
    } catch (err) {
      process.stderr.write(`verify-${PEER}: ${did}: unusable key: ${err?.message ?? err}\n`);
    }
  }

  // Parse the frame stream and envelopes once; keep the wire bytes of #commit messages.
  const commits = [];
  let frames = 0;
  for (const { offset, envelope } of splitFrames(readMaybeZstd(args.framesFile))) {
    frames++;
    const env = CBOR.decode(envelope);
    if (!CBOR.isBytes(env?.wire)) throw new Error(`frame at offset ${offset}: envelope lacks wire bytes`);
    const wire = CBOR.fromBytes(env.wire);
    let header;
    try {
      header = CBOR.decodeFirst(wire)[0];
    } catch {
      continue;
    }
    if (header?.op === 1 && header?.t === '#commit') commits.push({ offset, wire });
  }
  process.stderr.write(`verify-${PEER}: ${frames} frames, ${commits.length} #commit, ${keys.size} DID keys\n`);

  await runBench({
    peer: PEER,
    commits,
    verify: (item) => verifyCommit(item, keys),
    describe: (item) => `frame at offset ${item.offset}`,
    seconds: args.seconds,
    warmup: args.warmup,
    steps: STEPS,
    versions: installedVersions([
      '@atcute/cbor',
      '@atcute/cid',
      '@atcute/car',
      '@atcute/crypto',
      '@atcute/mst',
      '@atcute/repo',
      '@atcute/multibase',
      '@atcute/uint8array',
    ]),
  });
}

main().catch((err) => fail(PEER, err?.stack ?? String(err)));
