//! The run as an explicit state machine: [`step`] maps (state, event) to (state, action),
//! and this is the one place that decides what a run does next. It holds the whole
//! reconnect policy: which failures end the run, when `maxAttempts` is reached, how long
//! to wait (the delay formula itself is `BackoffPolicy::delay`), and what resets the
//! attempt counter. `supervisor.rs` performs the actions (discovery, dialing, status
//! updates, callbacks); it decides nothing itself.
//!
//! | state | event | next state | action |
//! |---|---|---|---|
//! | any | `Start` | connecting | `Connect` (attempt 0) |
//! | connecting, reconnecting | `Connected` | connected | `Announce(Ready)` on the run's first connection, else `Announce(Reconnected)` |
//! | connected | `Healthy` (first pong or event on the socket) | connected | `None`; attempt 0 |
//! | any running | `Failed`, terminal error | failed | `GiveUp(error)` |
//! | any running | `Failed`, `reconnect: false` | failed | `GiveUp(error)` |
//! | any running | `Failed`, attempt reaches `maxAttempts` | failed | `GiveUp(RECONNECT_EXHAUSTED, cause the error)` |
//! | any running | `Failed`, otherwise | reconnecting | `Retry { attempt, delay }`; CONNECTION_LIMIT waits the maximum delay |
//! | any running | `Stop(reason)` | stopped | `Finish(reason)` |
//!
//! A failure of a connection that had proven healthy starts a new series: the attempt
//! counter is reset before the failure counts (so one lost socket after hours of service
//! is attempt 1, never "exhausted"). Events that cannot happen in a state (a `Connected`
//! while stopped, say) leave it as it is and do nothing.

use std::time::Duration;

use super::backoff::BackoffPolicy;
use super::error::{ErrorCode, TransportError};
use super::status::State;

/// How a run ended when nobody failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `close()`.
    Closed,
    /// The caller's AbortSignal.
    Aborted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Closed => "closed",
            StopReason::Aborted => "aborted",
        }
    }
}

/// What the machine remembers between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunState {
    pub state: State,
    /// Consecutive failed attempts of the current series.
    pub attempt: u32,
    /// A connection of this run has been up (`Ready` was announced).
    pub ever_connected: bool,
}

impl RunState {
    /// A run not started yet.
    pub fn idle() -> RunState {
        RunState {
            state: State::Idle,
            attempt: 0,
            ever_connected: false,
        }
    }

    /// Whether the run is still going (not stopped or failed).
    pub fn running(&self) -> bool {
        matches!(
            self.state,
            State::Connecting | State::Connected | State::Reconnecting
        )
    }
}

/// What happens to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// `start()`.
    Start,
    /// Discovery and the dial succeeded: a socket is up.
    Connected,
    /// The live socket proved healthy (its first pong or event).
    Healthy,
    /// Discovery, the dial or the live socket failed; `healthy`: the lost socket had
    /// proven healthy.
    Failed {
        error: TransportError,
        healthy: bool,
    },
    /// `close()` or the AbortSignal.
    Stop(StopReason),
}

/// Which callback a new connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Ready,
    Reconnected,
}

/// What the run does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Discover an endpoint and dial it.
    Connect,
    /// Report the new connection.
    Announce(Announce),
    /// Wait `delay`, then connect again.
    Retry { attempt: u32, delay: Duration },
    /// End the run: `start()` rejects with this error.
    GiveUp(TransportError),
    /// End the run: `start()` resolves with this reason.
    Finish(StopReason),
    /// Nothing to do.
    None,
}

/// One transition. `policy` is `None` for `reconnect: false`; `roll` is a uniform random
/// number in [0, 1) for the jitter (passed in, so the function stays pure).
pub fn step(
    s: RunState,
    event: RunEvent,
    policy: Option<&BackoffPolicy>,
    roll: f64,
) -> (RunState, Action) {
    let at = |state: State, s: RunState| RunState { state, ..s };
    match event {
        RunEvent::Start => (
            RunState {
                state: State::Connecting,
                attempt: 0,
                ever_connected: false,
            },
            Action::Connect,
        ),
        RunEvent::Stop(reason) if s.running() => (at(State::Stopped, s), Action::Finish(reason)),
        RunEvent::Connected if matches!(s.state, State::Connecting | State::Reconnecting) => {
            let announce = if s.ever_connected {
                Announce::Reconnected
            } else {
                Announce::Ready
            };
            let next = RunState {
                state: State::Connected,
                ever_connected: true,
                ..s
            };
            (next, Action::Announce(announce))
        }
        RunEvent::Healthy if s.state == State::Connected => {
            (RunState { attempt: 0, ..s }, Action::None)
        }
        RunEvent::Failed { error, healthy } if s.running() => {
            let s = if healthy {
                RunState { attempt: 0, ..s }
            } else {
                s
            };
            failed(s, error, policy, roll)
        }
        // Not possible in this state: nothing changes.
        _ => (s, Action::None),
    }
}

/// The reconnect policy for one failure.
fn failed(
    s: RunState,
    error: TransportError,
    policy: Option<&BackoffPolicy>,
    roll: f64,
) -> (RunState, Action) {
    let give_up = |attempt, e| {
        let s = RunState {
            state: State::Failed,
            attempt,
            ..s
        };
        (s, Action::GiveUp(e))
    };
    if error.terminal {
        return give_up(s.attempt, error);
    }
    let attempt = s.attempt.saturating_add(1);
    let Some(policy) = policy else {
        return give_up(attempt, error);
    };
    if policy.max_attempts.is_some_and(|max| attempt >= max) {
        let exhausted = TransportError::terminal(
            ErrorCode::ReconnectExhausted,
            format!("gave up after {attempt} consecutive failed attempt(s); the last: {error}"),
        )
        .with_cause(error);
        return give_up(attempt, exhausted);
    }
    let delay = if error.code == ErrorCode::ConnectionLimit {
        // Another process holds the app's connections; a dead one frees its slot by
        // itself, so wait long rather than hammer.
        policy.max
    } else {
        policy.delay(attempt, roll)
    };
    let s = RunState {
        state: State::Reconnecting,
        attempt,
        ..s
    };
    (s, Action::Retry { attempt, delay })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [State; 6] = [
        State::Idle,
        State::Connecting,
        State::Connected,
        State::Reconnecting,
        State::Stopped,
        State::Failed,
    ];

    fn recoverable() -> TransportError {
        TransportError::recoverable(ErrorCode::Disconnected, "lost")
    }

    fn events() -> Vec<RunEvent> {
        vec![
            RunEvent::Start,
            RunEvent::Connected,
            RunEvent::Healthy,
            RunEvent::Failed {
                error: recoverable(),
                healthy: false,
            },
            RunEvent::Failed {
                error: recoverable(),
                healthy: true,
            },
            RunEvent::Failed {
                error: TransportError::terminal(ErrorCode::AuthFailed, "no"),
                healthy: false,
            },
            RunEvent::Stop(StopReason::Closed),
            RunEvent::Stop(StopReason::Aborted),
        ]
    }

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.0,
            max_attempts: Some(3),
        }
    }

    /// Every (state, event) pair, against the table in the module's documentation.
    #[test]
    fn every_state_and_event() {
        let p = policy();
        for state in STATES {
            for ever_connected in [false, true] {
                for attempt in [0, 1, 2] {
                    let s = RunState {
                        state,
                        attempt,
                        ever_connected,
                    };
                    let running = s.running();
                    for event in events() {
                        let (next, action) = step(s, event.clone(), Some(&p), 0.5);
                        let what = format!("{s:?} + {event:?} -> {next:?}, {action:?}");
                        match &event {
                            RunEvent::Start => {
                                assert_eq!(
                                    next,
                                    RunState {
                                        state: State::Connecting,
                                        attempt: 0,
                                        ever_connected: false
                                    },
                                    "{what}"
                                );
                                assert_eq!(action, Action::Connect, "{what}");
                            }
                            RunEvent::Stop(r) if running => {
                                assert_eq!(next.state, State::Stopped, "{what}");
                                assert_eq!(action, Action::Finish(*r), "{what}");
                            }
                            RunEvent::Connected
                                if matches!(state, State::Connecting | State::Reconnecting) =>
                            {
                                assert_eq!(next.state, State::Connected, "{what}");
                                assert!(next.ever_connected, "{what}");
                                assert_eq!(
                                    next.attempt, attempt,
                                    "a connection alone does not reset the series: {what}"
                                );
                                let expect = if ever_connected {
                                    Announce::Reconnected
                                } else {
                                    Announce::Ready
                                };
                                assert_eq!(action, Action::Announce(expect), "{what}");
                            }
                            RunEvent::Healthy if state == State::Connected => {
                                assert_eq!(next, RunState { attempt: 0, ..s }, "{what}");
                                assert_eq!(action, Action::None, "{what}");
                            }
                            RunEvent::Failed { error, healthy } if running => {
                                let base = if *healthy { 0 } else { attempt };
                                if error.terminal {
                                    assert_eq!(next.state, State::Failed, "{what}");
                                    assert_eq!(action, Action::GiveUp(error.clone()), "{what}");
                                } else if base + 1 >= 3 {
                                    assert_eq!(next.state, State::Failed, "{what}");
                                    let Action::GiveUp(e) = &action else {
                                        panic!("{what}")
                                    };
                                    assert_eq!(e.code, ErrorCode::ReconnectExhausted, "{what}");
                                    assert!(e.terminal, "{what}");
                                    assert_eq!(e.cause.as_deref(), Some(error), "{what}");
                                } else {
                                    assert_eq!(next.state, State::Reconnecting, "{what}");
                                    assert_eq!(next.attempt, base + 1, "{what}");
                                    assert_eq!(
                                        action,
                                        Action::Retry {
                                            attempt: base + 1,
                                            delay: p.delay(base + 1, 0.5)
                                        },
                                        "{what}"
                                    );
                                }
                            }
                            // Anything else cannot happen in this state: nothing changes.
                            _ => {
                                assert_eq!(next, s, "{what}");
                                assert_eq!(action, Action::None, "{what}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn max_attempts_counts_every_failure_including_the_first_connect() {
        let p = BackoffPolicy {
            max_attempts: Some(1),
            ..policy()
        };
        let (s, _) = step(RunState::idle(), RunEvent::Start, Some(&p), 0.0);
        let (s, action) = step(
            s,
            RunEvent::Failed {
                error: recoverable(),
                healthy: false,
            },
            Some(&p),
            0.0,
        );
        assert_eq!(s.state, State::Failed);
        assert!(matches!(action, Action::GiveUp(e) if e.code == ErrorCode::ReconnectExhausted));
    }

    #[test]
    fn without_reconnect_the_first_failure_ends_the_run() {
        let (s, _) = step(RunState::idle(), RunEvent::Start, None, 0.0);
        let (s, action) = step(
            s,
            RunEvent::Failed {
                error: recoverable(),
                healthy: false,
            },
            None,
            0.0,
        );
        assert_eq!(s.state, State::Failed);
        assert_eq!(action, Action::GiveUp(recoverable()));
    }

    #[test]
    fn connection_limit_waits_the_maximum_delay() {
        let p = policy();
        let (s, _) = step(RunState::idle(), RunEvent::Start, Some(&p), 0.0);
        let limit = TransportError::recoverable(ErrorCode::ConnectionLimit, "full");
        let (_, action) = step(
            s,
            RunEvent::Failed {
                error: limit,
                healthy: false,
            },
            Some(&p),
            0.0,
        );
        assert_eq!(
            action,
            Action::Retry {
                attempt: 1,
                delay: p.max
            }
        );
    }

    #[test]
    fn a_healthy_connection_starts_a_new_series() {
        let p = policy();
        let fail = |s, healthy| {
            step(
                s,
                RunEvent::Failed {
                    error: recoverable(),
                    healthy,
                },
                Some(&p),
                0.0,
            )
        };
        let (s, _) = step(RunState::idle(), RunEvent::Start, Some(&p), 0.0);
        let (s, _) = fail(s, false);
        let (s, _) = fail(s, false);
        assert_eq!(s.attempt, 2);
        let (s, _) = step(s, RunEvent::Connected, Some(&p), 0.0);
        // Lost before it proved healthy: the series goes on, and the third failure of
        // three allowed ends it.
        let (lost, action) = fail(s, false);
        assert_eq!(lost.state, State::Failed, "{action:?}");
        // Lost after it proved healthy: a new series.
        let (lost, action) = fail(s, true);
        assert_eq!(
            (lost.state, lost.attempt),
            (State::Reconnecting, 1),
            "{action:?}"
        );
    }
}
