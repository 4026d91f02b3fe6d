//! Delayed forwarding (`--delay TERM:15s`): hold a signal while, say, a load balancer stops
//! sending traffic. A second identical signal during the wait goes through at once. Nothing is
//! timed while nothing is held, so an idle ferrinit still makes no wake-ups.

use std::time::{Duration, Instant};

use crate::signals::{Received, Sig};

pub struct Delays {
    rules: Vec<(Sig, Duration)>,
    /// In arrival order.
    held: Vec<(Received, Instant)>,
}

impl Delays {
    pub fn new(rules: &[(Sig, Duration)]) -> Delays {
        Delays {
            rules: rules.to_vec(),
            held: Vec::new(),
        }
    }

    /// When the earliest held signal is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.iter().map(|&(_, due)| due).min()
    }

    /// Returns what is to be forwarded now, in order: nothing when `received` is held.
    ///
    /// A second identical signal goes through at once. A standard signal is one pending flag in
    /// the kernel, so it simply replaces the one held. Real-time signals queue, each instance
    /// counts: the ones held go first, then this one.
    pub fn admit(&mut self, received: Received, now: Instant) -> Vec<Received> {
        // The last rule for a signal wins, as with every repeated option.
        let Some(&(_, wait)) = self.rules.iter().rev().find(|(s, _)| *s == received.sig) else {
            return vec![received];
        };
        let same = |held: &(Received, Instant)| held.0.sig == received.sig;
        if !self.held.iter().any(same) {
            self.held.push((received, now + wait));
            return Vec::new();
        }
        let mut released = Vec::new();
        self.held.retain(|held| {
            if same(held) {
                released.push(held.0);
            }
            !same(held)
        });
        if !received.sig.is_real_time() {
            released.clear();
        }
        released.push(received);
        released
    }

    /// Removes and returns the held signals that are due, earliest first (and in arrival order
    /// when due at the same time).
    pub fn take_due(&mut self, now: Instant) -> Vec<Received> {
        let mut due: Vec<(Received, Instant)> = Vec::new();
        self.held.retain(|&(received, at)| {
            let ready = at <= now;
            if ready {
                due.push((received, at));
            }
            !ready
        });
        due.sort_by_key(|&(_, at)| at);
        due.into_iter().map(|(received, _)| received).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(sig: Sig) -> Received {
        Received::sent(sig)
    }

    fn sigs(received: Vec<Received>) -> Vec<Sig> {
        received.into_iter().map(|r| r.sig).collect()
    }

    #[test]
    fn undelayed_signals_pass_and_nothing_is_timed() {
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert_eq!(
            sigs(delays.admit(sent(Sig::INT), Instant::now())),
            [Sig::INT]
        );
        assert_eq!(delays.next_due(), None);
    }

    #[test]
    fn a_delayed_signal_is_held_until_due() {
        let start = Instant::now();
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert!(delays.admit(sent(Sig::TERM), start).is_empty());
        assert_eq!(delays.next_due(), Some(start + Duration::from_secs(5)));
        assert!(delays.take_due(start + Duration::from_secs(4)).is_empty());
        assert_eq!(
            sigs(delays.take_due(start + Duration::from_secs(5))),
            [Sig::TERM]
        );
        assert_eq!(delays.next_due(), None);
    }

    #[test]
    fn a_second_identical_signal_goes_through_at_once_and_cancels_the_wait() {
        let start = Instant::now();
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert!(delays.admit(sent(Sig::TERM), start).is_empty());
        assert_eq!(sigs(delays.admit(sent(Sig::TERM), start)), [Sig::TERM]);
        assert_eq!(delays.next_due(), None);
    }

    #[test]
    fn every_real_time_instance_is_released_in_arrival_order() {
        let start = Instant::now();
        let rtmin = Sig::from_number(libc::SIGRTMIN()).unwrap();
        let mut delays = Delays::new(&[(rtmin, Duration::from_secs(5))]);
        let numbered = |n| Received {
            sender: n,
            ..sent(rtmin)
        };
        let mut out = Vec::new();
        for n in 1..=4 {
            out.extend(delays.admit(numbered(n), start));
        }
        delays.admit(numbered(5), start);
        out.extend(delays.take_due(start + Duration::from_secs(5)));
        let senders: Vec<i32> = out.iter().map(|r| r.sender).collect();
        assert_eq!(senders, [1, 2, 3, 4, 5]);
    }
}
