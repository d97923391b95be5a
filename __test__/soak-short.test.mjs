// The soak in a short form: events under random drops, stalls, failed discovery and
// rejected handshakes; every one handled once and acked 200.
import { test } from 'node:test'
import { runSoak } from '../scripts/soak.mjs'

test('short soak: nothing is lost under chaos, and no event reaches the handler twice', async () => {
  await runSoak({ events: 3000, log: (line) => console.log(line) })
})
