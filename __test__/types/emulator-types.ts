// Compile-time check that emulator.d.ts exposes the generated native.d.ts types unchanged:
// every type must be identical in both directions. Compiled by
// __test__/emulator-types.test.mjs with `tsc --noEmit`.
import type * as Pub from '../../emulator'
import type * as Nat from '../../native'
import { FeishuEmulator } from '../../emulator'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
/** Mutual assignability: for the class, whose members name each file's own interfaces. */
type Mutual<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false
type Assert<T extends true> = T

export type Checks = [
  Assert<Mutual<InstanceType<typeof Pub.FeishuEmulator>, InstanceType<typeof Nat.FeishuEmulator>>>,
  Assert<Mutual<typeof Pub.FeishuEmulator.start, typeof Nat.FeishuEmulator.start>>,
  Assert<Equal<typeof Pub.FeishuEmulator.samples, typeof Nat.FeishuEmulator.samples>>,
  Assert<Equal<typeof Pub.FeishuEmulator.sampleNames, typeof Nat.FeishuEmulator.sampleNames>>,
  Assert<Mutual<typeof Pub.FeishuEmulator.generateTestCertificates, typeof Nat.FeishuEmulator.generateTestCertificates>>,
  Assert<Equal<Pub.EmulatorTlsOptions, Nat.EmulatorTlsOptions>>,
  Assert<Equal<Pub.EmulatorTestCertificates, Nat.EmulatorTestCertificates>>,
  Assert<Equal<Pub.EmulatorOptions, Nat.EmulatorOptions>>,
  Assert<Equal<Pub.EmulatorApp, Nat.EmulatorApp>>,
  Assert<Equal<Pub.EmulatorClientConfig, Nat.EmulatorClientConfig>>,
  Assert<Equal<Pub.EmulatorPushOptions, Nat.EmulatorPushOptions>>,
  Assert<Equal<Pub.EmulatorPushManyOptions, Nat.EmulatorPushManyOptions>>,
  Assert<Equal<Pub.EmulatorWaitOptions, Nat.EmulatorWaitOptions>>,
  Assert<Equal<Pub.EmulatorAckRecord, Nat.EmulatorAckRecord>>,
  Assert<Equal<Pub.EmulatorConnection, Nat.EmulatorConnection>>,
  Assert<Equal<Pub.EmulatorPing, Nat.EmulatorPing>>,
  Assert<Equal<Pub.EmulatorStats, Nat.EmulatorStats>>,
  Assert<Equal<Pub.EmulatorDiscoveryFault, Nat.EmulatorDiscoveryFault>>,
  Assert<Equal<Pub.EmulatorHandshakeRejection, Nat.EmulatorHandshakeRejection>>,
  Assert<Equal<Pub.EmulatorFrame, Nat.EmulatorFrame>>,
  Assert<Equal<Pub.EmulatorFrameHeader, Nat.EmulatorFrameHeader>>,
  Assert<Equal<Pub.AckRecord, Nat.EmulatorAckRecord>>,
]

// A usage sample, so the public names are exercised as users write them.
export async function usage(): Promise<string> {
  const emu = await FeishuEmulator.start({ clientConfig: { reconnectNonce: 0 } })
  const id = emu.pushEvent({ schema: '2.0' }, { fragments: 2, order: 'shuffle' })
  const ack: Pub.AckRecord = await emu.waitForAck(id, { timeoutMs: 1000, code: 200 })
  await emu.close()
  return ack.data ?? ''
}
