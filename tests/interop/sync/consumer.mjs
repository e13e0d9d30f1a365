// The reference firehose client (@atproto/sync's Firehose, its own verification on) reading a
// subscribeRepos server; for tests/interop/sync_firehose.py.
//
// usage: node consumer.mjs SERVICE PLC_URL CURSOR|- UNTIL_SEQ DEADLINE_S OUT_FILE
//   SERVICE    ws://127.0.0.1:PORT (the Firehose adds /xrpc/com.atproto.sync.subscribeRepos)
//   PLC_URL    the PLC directory the IdResolver resolves every DID against
//   CURSOR     the cursor of the first connection, or - for none (live only)
//   UNTIL_SEQ  stop once the event with this seq (or a later one) has been handled
//   DEADLINE_S give up after this many seconds (exit 3)
// Writes OUT_FILE, one JSON line per event in the order the Firehose handed them over:
//   {"seq", "did", "writes": [{"event", "commit", "path", "cid"}]}   (the writes the Firehose
//   verified and passed to handleEvent: one per verified op of a #commit, one for the others)
// then {"errors": [...], "connects": N}: every onError (message and cause) and how many
// connections the Firehose opened (more than 1 = it reconnected), and how many PLC GETs were
// sent again after the PLC server closed a kept-alive connection under them. Exit 0 when UNTIL_SEQ came.
import { writeFileSync } from 'node:fs'
import { Firehose } from '@atproto/sync'
import { IdResolver, MemoryCache } from '@atproto/identity'

const [service, plcUrl, cursorArg, untilArg, deadlineArg, outFile] = process.argv.slice(2)
const until = Number(untilArg)
const events = []
const errors = []
let connects = 0
let lastSeq = cursorArg === '-' ? undefined : Number(cursorArg)
let current = null
let finished = false
let chain = Promise.resolve()
let resolveDone
const done = new Promise((r) => (resolveDone = r))

// A runner that hands events over one at a time, in the order they came, and tells us each
// event's seq and DID (the Firehose gives handleEvent only the verified writes).
const runner = {
  getCursor() {
    // Called once per connection: the first one uses the cursor asked for, a reconnection
    // resumes after the last event handled (and is counted, as a finding).
    connects += 1
    return lastSeq
  },
  trackEvent(did, seq, handler) {
    chain = chain.then(async () => {
      if (finished) return
      current = { seq, did, writes: [] }
      events.push(current)
      await handler()
      lastSeq = seq
      if (seq >= until) {
        finished = true
        resolveDone()
      }
    })
    return chain
  },
}

// The PLC fetches go through Node's fetch, which keeps connections alive; a server closing an
// idle connection just as the next GET goes out on it makes fetch fail with "other side
// closed" (UND_ERR_SOCKET, no answer received). A consumer of the real network retries such a
// GET; so do we (at most 3 times), and count it (printed, not an error of the stream).
let refetches = 0
const plcFetch = async (input, init) => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await globalThis.fetch(input, init)
    } catch (err) {
      if (attempt >= 3 || err?.cause?.code !== 'UND_ERR_SOCKET') throw err
      refetches += 1
    }
  }
}

const firehose = new Firehose({
  // The default fetch refuses loopback addresses (SSRF protection): the simulated PLC is on
  // 127.0.0.1, so the plain fetch (above). DID documents are cached as a real consumer caches them.
  idResolver: new IdResolver({ plcUrl, timeout: 10000, fetch: plcFetch, didCache: new MemoryCache() }),
  runner,
  service,
  // The client pings every 2 s and gives the connection up (then reconnects, counted) when
  // nothing, not even a pong, came back in a whole interval: an idle live stretch of a few
  // seconds tests that the server answers pings (the default is 10 s).
  heartbeatIntervalMs: 2000,
  // Handle verification would ask DNS and https://HANDLE/.well-known for the simulated
  // handles (u<N>.sim.test), which do not exist: the DID documents still come from plcUrl.
  unauthenticatedHandles: true,
  handleEvent: async (evt) => {
    const w = { event: evt.event }
    if (evt.commit) w.commit = evt.commit.toString()
    if (evt.collection) w.path = `${evt.collection}/${evt.rkey}`
    if (evt.cid) w.cid = evt.cid.toString()
    if (current) current.writes.push(w)
  },
  onError: (err) => {
    let msg = String(err && err.message)
    for (let c = err && err.cause, k = 0; c && k < 4; c = c.cause, k++) {
      msg += ': ' + String(c.message ?? c)
      if (typeof c.error === 'string') msg += ` [${c.error}]` // an error frame's name (XRPCError)
    }
    const seq = err?.event?.seq ?? err?.value?.seq
    errors.push(seq === undefined ? msg : `seq ${seq}: ${msg}`)
  },
})

const timer = setTimeout(() => resolveDone('deadline'), Number(deadlineArg) * 1000)
firehose.start()
const why = await done
clearTimeout(timer)
finished = true
const lines = events.map((e) => JSON.stringify(e))
lines.push(JSON.stringify({ errors, connects, refetches, deadline: why === 'deadline' }))
writeFileSync(outFile, lines.join('\n') + '\n')
await Promise.race([firehose.destroy(), new Promise((r) => setTimeout(r, 5000))])
process.exit(why === 'deadline' ? 3 : 0)
