// Public types of the Feishu long-connection emulator (`require('feishu-transport/emulator')`
// or the package's main entry). The declarations, with their documentation, are the ones
// napi-rs generates from src/binding/emulator.rs into native.d.ts; this file re-exports
// the emulator's part of them (not the transport's internal `NativeTransport`), and adds
// the short aliases the docs use.
/// <reference types="node" />

export {
  FeishuEmulator,
  EmulatorAckRecord,
  EmulatorApp,
  EmulatorClientConfig,
  EmulatorConnection,
  EmulatorDiscoveryFault,
  EmulatorFrame,
  EmulatorFrameHeader,
  EmulatorHandshakeRejection,
  EmulatorOptions,
  EmulatorTlsOptions,
  EmulatorTestCertificates,
  EmulatorPing,
  EmulatorPushManyOptions,
  EmulatorPushOptions,
  EmulatorStats,
  EmulatorWaitOptions,
} from './native'

import type {
  EmulatorAckRecord,
  EmulatorConnection,
  EmulatorPing,
  EmulatorPushOptions,
  EmulatorPushManyOptions,
  EmulatorClientConfig,
  EmulatorDiscoveryFault,
  EmulatorHandshakeRejection,
} from './native'

export type AckRecord = EmulatorAckRecord
export type ConnectionInfo = EmulatorConnection
export type PingRecord = EmulatorPing
export type PushOptions = EmulatorPushOptions
export type PushManyOptions = EmulatorPushManyOptions
export type ClientConfig = EmulatorClientConfig
export type DiscoveryFault = EmulatorDiscoveryFault
export type HandshakeRejection = EmulatorHandshakeRejection
