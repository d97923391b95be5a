// Public types of the Feishu long-connection emulator (`require('feishu-transport/emulator')`
// or the package's main entry). Written to match the generated native.d.ts exactly
// (`__test__/emulator-types.test.mjs` checks both ways with tsc); the short aliases at the
// end are the names used in the docs.
/// <reference types="node" />

/**
 * A local Feishu long-connection server for tests, demos and benchmarks: the discovery
 * endpoint, the WebSocket with pbbp2 frames, pongs, fragments, cluster delivery,
 * re-delivery of unacked events, and faults on demand. Point a client at `domain`.
 *
 * Its server runs on the addon's own threads and does not keep the Node process alive;
 * call `close()` when done to release the port.
 */
export declare class FeishuEmulator {
  /** Starts an emulator (by default on 127.0.0.1 and a free port). */
  static start(options?: EmulatorOptions | undefined | null): Promise<FeishuEmulator>
  /** The names of the bundled sample payloads (`fixtures/events/*.json`). */
  static sampleNames(): Array<string>
  /** The bundled sample payloads, by name. */
  static samples(): Record<string, any>
  /**
   * Makes a fresh CA and a server certificate it signed, for `hosts` (default
   * `localhost`, `127.0.0.1`, `::1`): serve with `start({ tls: { certPem, keyPem } })`
   * and trust `caPem` in the client. For tests only.
   */
  static generateTestCertificates(hosts?: Array<string> | undefined | null): EmulatorTestCertificates
  /** The base URL to use as the client's domain: `http://127.0.0.1:<port>` (`https://…` when serving TLS). */
  get domain(): string
  /** The port the emulator listens on. */
  get port(): number
  /** The app id of the first (default) app. */
  get appId(): string
  /** The secret of the first (default) app. */
  get appSecret(): string
  /**
   * Pushes one event and returns its `message_id`. An object payload is
   * JSON-serialised; a string or Buffer is sent as is. Never fails for lack of a
   * connection: the event waits for one.
   */
  pushEvent(payload: object | string | Buffer, options?: EmulatorPushOptions | undefined | null): string
  /** Pushes a bundled sample by name (see `sampleNames()`); returns its `message_id`. */
  pushSample(name: string, options?: EmulatorPushOptions | undefined | null): string
  /**
   * Pushes `count` events from inside Rust (for benchmarks) and resolves with the
   * number pushed once all are pushed (not acked: use `waitForAllAcked`).
   */
  pushMany(options: EmulatorPushManyOptions): Promise<number>
  /**
   * Resolves with the first ack of `messageId` (with `code`, if given); rejects after
   * `timeoutMs` (default 5000) with an error naming the message id.
   */
  waitForAck(messageId: string, options?: EmulatorWaitOptions | undefined | null): Promise<EmulatorAckRecord>
  /** Resolves once at least `n` connections (of `appId`, or of every app) are live. */
  waitForConnections(n: number, options?: EmulatorWaitOptions | undefined | null): Promise<void>
  /** Resolves once every pushed event has been acked with 200. */
  waitForAllAcked(options?: EmulatorWaitOptions | undefined | null): Promise<void>
  /** Every ack received, in arrival order. */
  acks(): Array<EmulatorAckRecord>
  /** The live connections. */
  connections(): Array<EmulatorConnection>
  /** Every protocol ping received. */
  pings(): Array<EmulatorPing>
  /** Counters since start. */
  stats(): EmulatorStats
  /** The ClientConfig later pongs and discovery answers carry. */
  clientConfig(): EmulatorClientConfig
  /**
   * Makes pongs carry this config while discovery keeps the client config (`null`:
   * pongs follow the client config again). Missing fields take the client config's.
   */
  setPongConfig(config?: EmulatorClientConfig | undefined | null): void
  /**
   * Changes the ClientConfig of later pongs and discovery answers (seconds, as on the
   * wire); missing fields keep their value.
   */
  setClientConfig(config: EmulatorClientConfig): void
  /**
   * Closes live connections (all when `connectionId` is null/absent): with a WebSocket
   * close frame when `closeFrame` is true (the default), else by dropping the TCP
   * socket. Returns how many.
   */
  dropConnections(connectionId?: string | undefined | null, closeFrame?: boolean | undefined | null): number
  /**
   * Stops reading and writing on live connections (all when absent) but keeps their
   * sockets open: a half-open peer. New connections are not affected. Returns how many.
   */
  stall(connectionId?: string | undefined | null): number
  /** Makes the next discovery requests fail (faults queue up in call order). */
  failDiscovery(fault: EmulatorDiscoveryFault): void
  /** Refuses the next handshakes with an HTTP status and `Handshake-*` headers. */
  rejectHandshakes(rejection: EmulatorHandshakeRejection): void
  /** Reads the next `count` (default 1) upgrade requests and never answers them. */
  hangHandshakes(count?: number | undefined | null): void
  /**
   * Completes the next `count` handshakes (absent: all until `clearFaults()`) and
   * closes each connection at once.
   */
  acceptAndClose(count?: number | undefined | null): void
  /** Forgets every pending discovery and handshake fault. */
  clearFaults(): void
  /** Sends a pbbp2 frame to a connection (all when absent); returns how many. */
  sendFrame(frame: EmulatorFrame, connectionId?: string | undefined | null): number
  /**
   * Sends arbitrary bytes as one binary WebSocket message; returns how many
   * connections got it.
   */
  sendRaw(bytes: Buffer, connectionId?: string | undefined | null): number
  /** Sends a text WebSocket message (the protocol has none); returns how many. */
  sendText(text: string, connectionId?: string | undefined | null): number
  /**
   * Stops the server: closes every connection, ends every task, frees the port.
   * Idempotent.
   */
  close(): Promise<void>
}

/** One ack received from a client. Absent values are `null`. */
export interface EmulatorAckRecord {
  messageId: string
  /** `header.event_id` (v2) or `uuid` (v1) of the pushed payload. */
  eventId: string | null
  /** 200 ok, 500 failed. */
  code: number
  /** The ack's `data`, base64-decoded: the JSON text of a handler's reply. */
  data: string | null
  /** The headers of the ack frame (the echoed ones plus `biz_rt`). */
  headers: Record<string, string>
  /** The connection it came in on. */
  connectionId: string
  /** The `biz_rt` header, if numeric. */
  bizRt: number | null
  /** When it arrived, ms since the epoch. */
  at: number
  /** From the push of that delivery's last fragment to the ack, in microseconds. */
  latencyUs: number
  /**
   * 1 = answer to the first delivery, 2 = to the first re-delivery, …; 0 = a message
   * the emulator never pushed.
   */
  delivery: number
}

/** One app the emulator's discovery endpoint accepts. */
export interface EmulatorApp {
  appId: string
  appSecret: string
}

/**
 * The `ClientConfig` Feishu sends in discovery answers and pongs. All values are
 * **seconds** (or a count), exactly as on the wire. Missing fields keep their current
 * value (the defaults are 120, -1, 120, 30).
 */
export interface EmulatorClientConfig {
  pingInterval?: number
  /** Negative means unlimited. */
  reconnectCount?: number
  reconnectInterval?: number
  reconnectNonce?: number
}

/** A live connection. */
export interface EmulatorConnection {
  /** The device_id of its URL. */
  id: string
  appId: string
  serviceId: number
  /** ms since the epoch. */
  connectedAt: number
  /** Protocol pings received on it. */
  pings: number
  /** True after `stall()`. */
  stalled: boolean
}

/** What the next discovery requests get instead of a normal answer. */
export interface EmulatorDiscoveryFault {
  /** How many requests; default 1. */
  count?: number
  /**
   * `'code'`: HTTP 200 with `{code, msg}`; `'http-status'`: that HTTP status;
   * `'hang'`: never answer; `'delay'`: answer correctly after `delayMs`; `'body'`:
   * HTTP 200 with the raw `body`; `'url'`: code 0 with this `url`.
   */
  kind: 'code' | 'http-status' | 'hang' | 'delay' | 'body' | 'url'
  code?: number
  msg?: string
  status?: number
  delayMs?: number
  body?: string
  url?: string
}

/** A raw pbbp2 frame for `sendFrame()`; missing numbers are 0. */
export interface EmulatorFrame {
  seqId?: number
  logId?: number
  service?: number
  /** 0 control, 1 data. */
  method?: number
  headers?: Array<EmulatorFrameHeader>
  payloadEncoding?: string
  payloadType?: string
  /** Bytes, or a string sent as UTF-8. */
  payload?: Buffer | string
  logIdNew?: string
}

/** A pbbp2 header. */
export interface EmulatorFrameHeader {
  key: string
  value: string
}

/** How to refuse handshakes. */
export interface EmulatorHandshakeRejection {
  /** How many handshakes; default 1. */
  count?: number
  /** The HTTP status line; default 514. */
  httpStatus?: number
  /** The `Handshake-Status` header (omitted when absent). */
  handshakeStatus?: number
  /** The `Handshake-Msg` header. */
  msg?: string
  /** The `Handshake-Autherrcode` header (1000040350 = connection limit). */
  autherrcode?: number
}

/** Options of `FeishuEmulator.start()`; every field is optional. */
export interface EmulatorOptions {
  /** Interface to listen on; default `"127.0.0.1"`. */
  host?: string
  /** Port; default 0 (a free port, read it back from `port`). */
  port?: number
  /**
   * The accepted apps. Default: one app, `cli_a1b2c3d4e5f60718` / `emulator-secret`
   * (the app id of the sample payloads).
   */
  apps?: Array<EmulatorApp>
  /** Shorthand for a single app (used when `apps` is absent). */
  appId?: string
  /** Secret of the `appId` shorthand; default `emulator-secret`. */
  appSecret?: string
  /** What discovery and pongs carry. */
  clientConfig?: EmulatorClientConfig
  /** How long a delivery may stay unacked before it is pushed again; default 3000. */
  ackDeadlineMs?: number
  /** Re-deliveries after the first delivery before an event is given up; default 3. */
  maxRedeliveries?: number
  /** The `service_id` of issued URLs (clients echo it in pings); default 33554678. */
  serviceId?: number
  /** Live connections allowed per app; default 50. */
  maxConnectionsPerApp?: number
  /**
   * Ack records and finished events remembered (default 250000; older ones are
   * forgotten in batches, so up to twice as many are held).
   */
  maxHistory?: number
  /** Serve `https`/`wss` with this certificate (`domain` becomes `https://…`). */
  tls?: EmulatorTlsOptions
}

/** The certificate the emulator serves, as PEM. */
export interface EmulatorTlsOptions {
  /** The certificate chain, leaf first. */
  certPem: string
  /** Its private key (PKCS#8, PKCS#1 or SEC1). */
  keyPem: string
}

/**
 * A throwaway CA and a server certificate it signed, from
 * `FeishuEmulator.generateTestCertificates()`.
 */
export interface EmulatorTestCertificates {
  /** The CA certificate: give it to the client (`tls.caPem`). */
  caPem: string
  /** The server certificate, for `start({ tls: { certPem, keyPem } })`. */
  certPem: string
  /** Its private key. */
  keyPem: string
}

/** One protocol ping received. */
export interface EmulatorPing {
  connectionId: string
  /** The ping frame's `service` field. */
  service: number
  /** ms since the epoch. */
  at: number
}

/** Options of `pushMany()` (benchmarks): the pushing happens inside Rust. */
export interface EmulatorPushManyOptions {
  /** How many events. */
  count: number
  /**
   * Size of each generated payload (a v2 `im.message.receive_v1` envelope with a
   * unique `event_id`); default 512.
   */
  payloadBytes?: number
  /** Push this payload for every event instead (an object is JSON-serialised). */
  payload?: object | string
  /** Fragments per event; default 1. */
  fragments?: number
  /** At most this many events pushed and not yet acked with 200. */
  maxInFlight?: number
  /** Pace the pushes at this many per second. */
  ratePerSec?: number
  /** The app; default the first. */
  appId?: string
}

/** Options of `pushEvent()` / `pushSample()`. */
export interface EmulatorPushOptions {
  /**
   * The app whose connections receive it; default the first app (or the app of
   * `connectionId`).
   */
  appId?: string
  /** Split the payload into this many fragments (clamped to 1..=payload bytes). */
  fragments?: number
  /**
   * The `type` header: `'event'` (default) or `'card'`. Cards are sent once and not
   * tracked (no SDK acks them).
   */
  type?: 'event' | 'card' | (string & {})
  /** Fragment order on the wire; default `'in-order'`. */
  order?: 'in-order' | 'reverse' | 'shuffle'
  /** Deliver to this connection (its `id`, the URL's device_id) instead of a random one. */
  connectionId?: string
  /** Use this `message_id` instead of a generated one. */
  messageId?: string
  /** Use this `trace_id` for the first delivery. */
  traceId?: string
}

/** Counters since start. */
export interface EmulatorStats {
  discoveryCalls: number
  discoveryFaults: number
  handshakes: number
  handshakesRejected: number
  connectionsTotal: number
  liveConnections: number
  /** Events pushed (cards excluded). */
  pushed: number
  /** Delivery attempts, re-deliveries included. */
  deliveries: number
  redeliveries: number
  framesSent: number
  acks: number
  acksOk: number
  acksFailed: number
  acksUnknown: number
  /** Pushed events not yet acked with 200. */
  pending: number
  givenUp: number
  /** Deliveries waiting for a live connection. */
  queued: number
  pings: number
  badFramesReceived: number
  /** TLS handshakes that failed (a client not trusting the certificate, say). */
  tlsHandshakeFailures: number
}

/** Options of the `waitFor…()` methods. */
export interface EmulatorWaitOptions {
  /** Give up after this many milliseconds; default 5000. */
  timeoutMs?: number
  /** `waitForAck`: only an ack with this code counts. */
  code?: number
  /** `waitForConnections`: count only this app's connections. */
  appId?: string
}

/** Short names for the emulator's record and option types. */
export type AckRecord = EmulatorAckRecord
export type ConnectionInfo = EmulatorConnection
export type PingRecord = EmulatorPing
export type PushOptions = EmulatorPushOptions
export type PushManyOptions = EmulatorPushManyOptions
export type ClientConfig = EmulatorClientConfig
export type DiscoveryFault = EmulatorDiscoveryFault
export type HandshakeRejection = EmulatorHandshakeRejection
