#!/usr/bin/env node
// Peer verifier built on the TypeScript reference implementation (@atproto/repo, @atproto/crypto,
// @atproto/lex-cbor), as published on npm. See README.md.
//
// Per #commit message (inside the timed loop):
//   decode  header + payload with @atproto/lex-cbor (exactly two DAG-CBOR objects)
//   cid     readCarWithRoot(): parses the CAR and re-hashes every block against its CID (sha256);
//           roots[0] must equal msg.commit
//   commit  MemoryBlockstore.readObj(root, def.commit): commit block present and a v3 commit;
//           commit.did == msg.repo, commit.rev == msg.rev
//   sig     verifyCommitSig(commit, did:key) (= sig over the DAG-CBOR re-encoding without `sig`,
//           low-S enforced by @atproto/crypto)
//   ops     MST.load(store, commit.data).get(path) == op.cid for create/update, == null for delete;
//           duplicate paths rejected. This is what @atproto/repo's verifyProofs() (used by
//           @atproto/sync's parseCommitAuthenticated) does.
//   inversion  on the same partial MST, apply the inverse of every op with the library's own MST
//           operations (create -> delete(path), update -> update(path, prev), delete -> add(path, prev));
//           the recomputed root (getPointer) must equal msg.prevData. The reference packages ship no
//           ready-made "invert a firehose commit" function; the composition is ours, the tree code is theirs.

import { decode, decodeAll } from '@atproto/lex-cbor';
import { MST, MemoryBlockstore, def, readCarWithRoot, verifyCommitSig } from '@atproto/repo';
import { installedVersions, loadDidDocs, parseArgs, readMaybeZstd, runBench, splitFrames, fail } from './common.mjs';

const PEER = 'atproto';
const STEPS = 'cid,sig,ops,inversion';

function decodeWire(wire) {
  const items = [];
  for (const item of decodeAll(wire)) {
    items.push(item);
    if (items.length > 2) throw new Error('wire holds more than two CBOR objects');
  }
  if (items.length !== 2) throw new Error('wire does not hold a header and a payload');
  return items;
}

async function verifyCommit(item, keys) {
  const [header, msg] = decodeWire(item.wire);
  if (header?.op !== 1 || header?.t !== '#commit') throw new Error('not a #commit message');
  const did = msg.repo;
  const didKey = keys.get(did);
  if (didKey === undefined) throw new Error(`no-key: no #atproto key for ${did}`);
  if (!(msg.blocks instanceof Uint8Array)) throw new Error('blocks is not bytes');
  if (!Array.isArray(msg.ops)) throw new Error('ops is not an array');

  // CAR: every block re-hashed (readCar's default verifyIncomingCarBlocks)
  const car = await readCarWithRoot(msg.blocks);
  if (msg.commit == null || !car.root.equals(msg.commit)) throw new Error('bad-car: roots[0] != msg.commit');
  const store = new MemoryBlockstore(car.blocks);
  const commit = await store.readObj(car.root, def.commit);
  if (commit.did !== did) throw new Error(`bad-commit: commit.did ${commit.did} != repo ${did}`);
  if (commit.rev !== msg.rev) throw new Error(`bad-commit: commit.rev ${commit.rev} != msg.rev ${msg.rev}`);

  if (!(await verifyCommitSig(commit, didKey))) throw new Error('bad-sig: signature does not verify');

  // ops against the tree of the new commit
  const mst = MST.load(store, commit.data);
  const seen = new Set();
  for (const op of msg.ops) {
    if (seen.has(op.path)) throw new Error(`bad-proof: duplicate op path ${op.path}`);
    seen.add(op.path);
    const found = await mst.get(op.path);
    if (op.action === 'delete') {
      if (found !== null) throw new Error(`bad-proof: deleted ${op.path} still in tree`);
    } else if (op.action === 'create' || op.action === 'update') {
      if (op.cid == null || found === null || !found.equals(op.cid)) {
        throw new Error(`bad-proof: ${op.action} ${op.path}: tree has ${found}, op says ${op.cid}`);
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
  let tree = mst;
  for (const op of sorted) {
    if (op.action === 'create') {
      tree = await tree.delete(op.path);
    } else if (op.action === 'update') {
      if (op.prev == null) throw new Error(`bad-proof: update ${op.path} without prev`);
      tree = await tree.update(op.path, op.prev);
    } else {
      if (op.prev == null) throw new Error(`bad-proof: delete ${op.path} without prev`);
      tree = await tree.add(op.path, op.prev);
    }
  }
  const root = await tree.getPointer();
  if (!root.equals(msg.prevData)) throw new Error(`bad-proof: inverted root ${root} != prevData ${msg.prevData}`);
}

async function main() {
  const args = parseArgs(PEER, process.argv.slice(2));

  const keys = new Map();
  for (const { did, vm } of loadDidDocs(args.docsFile)) {
    // Multikey form only: did:key is 'did:key:' + publicKeyMultibase ('zQ3s…' k256, 'zDn…' p256)
    if (vm.type === 'Multikey' && vm.publicKeyMultibase.startsWith('z')) keys.set(did, `did:key:${vm.publicKeyMultibase}`);
  }

  // Parse the frame stream and envelopes once; keep the wire bytes of #commit messages.
  const commits = [];
  let frames = 0;
  for (const { offset, envelope } of splitFrames(readMaybeZstd(args.framesFile))) {
    frames++;
    const env = decode(envelope);
    if (!(env?.wire instanceof Uint8Array)) throw new Error(`frame at offset ${offset}: envelope lacks wire bytes`);
    let header;
    try {
      header = decodeAll(env.wire).next().value;
    } catch {
      continue; // not decodable at all: not a #commit we can count
    }
    if (header?.op === 1 && header?.t === '#commit') commits.push({ offset, wire: env.wire });
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
      '@atproto/repo',
      '@atproto/crypto',
      '@atproto/lex-cbor',
      '@atproto/lex-data',
      '@noble/curves',
      '@noble/hashes',
      'cborg',
      'multiformats',
    ]),
  });
}

main().catch((err) => fail(PEER, err?.stack ?? String(err)));
