//! What becomes of a signal ferrinit receives: one policy for the main loop (to the child) and
//! for the drain (to everything left). `--delay` holds it, `--rewrite` renames or drops it, and
//! a stop signal is forwarded while the child runs but never during the drain.

use std::time::Instant;

use crate::delay::Delays;
use crate::log::info;
use crate::signals::{Queued, Received, Sig};

/// Where ferrinit is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// The child runs: signals are for it (or its group).
    Running,
    /// The child is gone and `--grace-period` shuts down what is left.
    Draining,
}

/// A signal to send now.
#[derive(Clone, Copy)]
pub struct Outgoing {
    pub sig: Sig,
    /// The value and sender of a signal sent with `sigqueue`, for a target that can take them.
    pub queued: Option<Queued>,
}

pub struct Forwarding {
    rewrites: Vec<(Sig, Option<Sig>)>,
    delays: Delays,
}

impl Forwarding {
    pub fn new(rewrites: &[(Sig, Option<Sig>)], delays: &[(Sig, std::time::Duration)]) -> Self {
        Forwarding {
            rewrites: rewrites.to_vec(),
            delays: Delays::new(delays),
        }
    }

    /// What to send now that `received` has arrived, in order: nothing if it is held or dropped,
    /// more than one if it releases held ones.
    pub fn admit(&mut self, received: Received, phase: Phase, now: Instant) -> Vec<Outgoing> {
        let released = self.delays.admit(received, now);
        if released.is_empty() {
            info!("holding {} (--delay)", received.sig);
        }
        self.outgoing(released, phase)
    }

    /// When the next held signal is due: the wait for signals must end by then.
    pub fn next_due(&self) -> Option<Instant> {
        self.delays.next_due()
    }

    /// The held signals that are due, to send now. Call on every turn, not only when the wait
    /// times out: a stream of signals can keep it from ever timing out.
    pub fn take_due(&mut self, now: Instant, phase: Phase) -> Vec<Outgoing> {
        if self.delays.next_due().is_none_or(|due| due > now) {
            return Vec::new();
        }
        let due = self.delays.take_due(now);
        self.outgoing(due, phase)
    }

    fn outgoing(&self, released: Vec<Received>, phase: Phase) -> Vec<Outgoing> {
        released
            .into_iter()
            .filter_map(|received| self.rewrite(received, phase))
            .collect()
    }

    fn rewrite(&self, received: Received, phase: Phase) -> Option<Outgoing> {
        // The last rule for a signal wins, as with every repeated option.
        let rule = self
            .rewrites
            .iter()
            .rev()
            .find(|(from, _)| *from == received.sig);
        let sig = match rule {
            None => received.sig,
            Some((_, Some(to))) => *to,
            Some((_, None)) => {
                info!("dropping {} (--rewrite)", received.sig);
                return None;
            }
        };
        // A stopped process cannot finish shutting down: it would only sit out the grace period
        // and be SIGKILLed at its end. While the child runs, stopping is its business.
        if phase == Phase::Draining && is_stop(sig) {
            info!("not forwarding {sig} during the shutdown: it would stop what is exiting");
            return None;
        }
        Some(Outgoing {
            sig,
            queued: received.queued,
        })
    }
}

/// The signals whose default action stops a process (SIGSTOP itself never reaches ferrinit).
fn is_stop(sig: Sig) -> bool {
    [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGSTOP].contains(&sig.number())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sig(n: i32) -> Sig {
        Sig::from_number(n).unwrap()
    }

    fn sent(forwarding: &mut Forwarding, n: i32, phase: Phase) -> Vec<i32> {
        let out = forwarding.admit(Received::sent(sig(n)), phase, Instant::now());
        out.iter().map(|o| o.sig.number()).collect()
    }

    #[test]
    fn rewrites_and_drops_alike_in_both_phases() {
        let rules = [(Sig::TERM, Some(sig(libc::SIGQUIT))), (Sig::INT, None)];
        let mut forwarding = Forwarding::new(&rules, &[]);
        for phase in [Phase::Running, Phase::Draining] {
            assert_eq!(sent(&mut forwarding, libc::SIGTERM, phase), [libc::SIGQUIT]);
            assert!(sent(&mut forwarding, libc::SIGINT, phase).is_empty());
            assert_eq!(sent(&mut forwarding, libc::SIGUSR1, phase), [libc::SIGUSR1]);
        }
    }

    #[test]
    fn stop_signals_reach_the_child_but_never_the_drain() {
        let rules = [(Sig::HUP, Some(sig(libc::SIGTSTP)))];
        let mut forwarding = Forwarding::new(&rules, &[]);
        for stop in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGHUP] {
            assert!(!sent(&mut forwarding, stop, Phase::Running).is_empty());
            assert!(sent(&mut forwarding, stop, Phase::Draining).is_empty());
        }
    }

    #[test]
    fn delays_hold_in_both_phases_and_rewrite_when_due() {
        let mut forwarding = Forwarding::new(
            &[(Sig::TERM, Some(sig(libc::SIGUSR2)))],
            &[(Sig::TERM, Duration::from_secs(5))],
        );
        let start = Instant::now();
        for phase in [Phase::Running, Phase::Draining] {
            assert!(
                forwarding
                    .admit(Received::sent(Sig::TERM), phase, start)
                    .is_empty()
            );
            assert!(forwarding.take_due(start, phase).is_empty());
            let due = forwarding.take_due(start + Duration::from_secs(5), phase);
            let due: Vec<i32> = due.iter().map(|o| o.sig.number()).collect();
            assert_eq!(due, [libc::SIGUSR2]);
        }
    }
}
