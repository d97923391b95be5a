//! Faults on demand: what the next discovery requests and handshakes get instead of the
//! normal answer. Faults queue up in call order, so a test can script a sequence such as
//! "two rejected handshakes, then one that is accepted and closed".

use std::collections::VecDeque;
use std::time::Duration;

/// What the next `count` discovery requests get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryFault {
    pub count: usize,
    pub kind: DiscoveryFaultKind,
}

/// How a discovery request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryFaultKind {
    /// HTTP 200 with `{"code":code,"msg":msg,"data":{"URL":""}}`, as Feishu reports
    /// business errors (1 system busy, 514 auth failed, 1000040343 internal error…).
    Code { code: i64, msg: String },
    /// That HTTP status with a small JSON body.
    HttpStatus(u16),
    /// Read the request, never answer, keep the socket open (until the emulator closes).
    Hang,
    /// Answer correctly, after this delay.
    Delay(Duration),
    /// HTTP 200 with this raw body (not JSON, say).
    Body(String),
    /// `code: 0` but this URL (`""`, or a host that does not resolve).
    Url(String),
}

/// A handshake refusal: the status line and the `Handshake-*` headers Feishu sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRejection {
    pub http_status: u16,
    pub handshake_status: Option<i64>,
    pub msg: Option<String>,
    pub autherrcode: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeFault {
    Reject(HandshakeRejection),
    Hang,
    AcceptAndClose,
}

/// The queues. `None` as a remaining count means "until cleared".
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) discovery: VecDeque<DiscoveryFault>,
    pub(crate) handshake: VecDeque<(HandshakeFault, Option<usize>)>,
}

impl Faults {
    pub(crate) fn push_handshake(&mut self, fault: HandshakeFault, count: Option<usize>) {
        // A zero count would never be consumed and would block the faults behind it.
        if count != Some(0) {
            self.handshake.push_back((fault, count));
        }
    }

    /// The fault for the discovery request being served now, if any; uses one count.
    pub(crate) fn take_discovery(&mut self) -> Option<DiscoveryFaultKind> {
        while let Some(front) = self.discovery.front_mut() {
            if front.count == 0 {
                self.discovery.pop_front();
                continue;
            }
            front.count -= 1;
            let kind = front.kind.clone();
            if front.count == 0 {
                self.discovery.pop_front();
            }
            return Some(kind);
        }
        None
    }

    /// The fault for the handshake being served now, if any; uses one count.
    pub(crate) fn take_handshake(&mut self) -> Option<HandshakeFault> {
        let (fault, remaining) = self.handshake.front_mut()?;
        let fault = fault.clone();
        match remaining {
            None => {}
            Some(n) => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.handshake.pop_front();
                }
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_faults_are_used_in_order_and_counted() {
        let mut f = Faults::default();
        f.discovery.push_back(DiscoveryFault {
            count: 2,
            kind: DiscoveryFaultKind::HttpStatus(503),
        });
        f.discovery.push_back(DiscoveryFault {
            count: 0,
            kind: DiscoveryFaultKind::Hang,
        });
        f.discovery.push_back(DiscoveryFault {
            count: 1,
            kind: DiscoveryFaultKind::Body("nope".into()),
        });
        assert_eq!(
            f.take_discovery(),
            Some(DiscoveryFaultKind::HttpStatus(503))
        );
        assert_eq!(
            f.take_discovery(),
            Some(DiscoveryFaultKind::HttpStatus(503))
        );
        // the zero-count entry is skipped, not served
        assert_eq!(
            f.take_discovery(),
            Some(DiscoveryFaultKind::Body("nope".into()))
        );
        assert_eq!(f.take_discovery(), None);
    }

    #[test]
    fn handshake_faults_queue_and_unbounded_ones_stay() {
        let mut f = Faults::default();
        f.push_handshake(HandshakeFault::Hang, Some(1));
        f.push_handshake(HandshakeFault::Hang, Some(0)); // ignored
        f.push_handshake(HandshakeFault::AcceptAndClose, None);
        assert_eq!(f.take_handshake(), Some(HandshakeFault::Hang));
        for _ in 0..5 {
            assert_eq!(f.take_handshake(), Some(HandshakeFault::AcceptAndClose));
        }
        f = Faults::default();
        assert_eq!(f.take_handshake(), None);
    }
}
