// The reference PLC directory (@did-plc/server, from the npm registry) on 127.0.0.1 only, for
// tests/interop/refnet_plc.py.
//   node plc-server.mjs PORT [POSTGRES_URL]
// With a PostgreSQL URL it uses the PostgreSQL backend (the only one that implements
// GET /export); without, the in-memory mock. Prints "READY <port>" once listening; stops on
// SIGTERM / SIGINT.
import net from 'node:net'
import { createRequire } from 'node:module'

// The server calls listen(port) with no host, which would listen on every interface: pin
// every listener of this process to loopback.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0])
    const rest = args.slice(1).filter((a) => typeof a === 'function')
    return listen.call(this, { port, host: '127.0.0.1' }, ...rest)
  }
  if (args[0] && typeof args[0] === 'object' && !Array.isArray(args[0])) args[0] = { ...args[0], host: '127.0.0.1' }
  return listen.apply(this, args)
}

const require = createRequire(import.meta.url)
const plc = require('@did-plc/server')
const port = Number(process.argv[2] || 0)
const pgUrl = process.argv[3]
let db
if (pgUrl) {
  db = plc.Database.postgres({ url: pgUrl, schema: 'plc' })
  await db.migrateToLatestOrThrow()
} else {
  db = plc.Database.mock()
}
const server = plc.PlcServer.create({ db, port, version: 'interop' })
await server.start()
console.log('READY ' + port)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  try { await server.destroy() } catch (e) { console.error(e) }
  try { await db.close() } catch {}
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
