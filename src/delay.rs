//! Delayed forwarding (`--delay TERM:15s`): hold a signal while, say, a load balancer stops
//! sending traffic. A second identical signal during the wait goes through at once. Nothing is
//! timed while nothing is held, so an idle ferrinit still makes no wake-ups.

use std::time::{Duration, Instant};

use crate::signals::Sig;

pub struct Delays {
    rules: Vec<(Sig, Duration)>,
    held: Vec<(Sig, Instant)>,
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

    /// Returns the signal if it is to be forwarded now, or holds it and returns `None`.
    pub fn admit(&mut self, sig: Sig, now: Instant) -> Option<Sig> {
        // The last rule for a signal wins, as with every repeated option.
        let Some(&(_, wait)) = self.rules.iter().rev().find(|(s, _)| *s == sig) else {
            return Some(sig);
        };
        if let Some(i) = self.held.iter().position(|&(s, _)| s == sig) {
            self.held.swap_remove(i);
            return Some(sig);
        }
        self.held.push((sig, now + wait));
        None
    }

    /// Removes and returns the held signals that are due, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Sig> {
        let mut due: Vec<(Sig, Instant)> = Vec::new();
        self.held.retain(|&(sig, at)| {
            let ready = at <= now;
            if ready {
                due.push((sig, at));
            }
            !ready
        });
        due.sort_by_key(|&(_, at)| at);
        due.into_iter().map(|(sig, _)| sig).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undelayed_signals_pass_and_nothing_is_timed() {
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert_eq!(delays.admit(Sig::INT, Instant::now()), Some(Sig::INT));
        assert_eq!(delays.next_due(), None);
    }

    #[test]
    fn a_delayed_signal_is_held_until_due() {
        let start = Instant::now();
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert_eq!(delays.admit(Sig::TERM, start), None);
        assert_eq!(delays.next_due(), Some(start + Duration::from_secs(5)));
        assert!(delays.take_due(start + Duration::from_secs(4)).is_empty());
        assert_eq!(delays.take_due(start + Duration::from_secs(5)), [Sig::TERM]);
        assert_eq!(delays.next_due(), None);
    }

    #[test]
    fn a_second_identical_signal_goes_through_at_once_and_cancels_the_wait() {
        let start = Instant::now();
        let mut delays = Delays::new(&[(Sig::TERM, Duration::from_secs(5))]);
        assert_eq!(delays.admit(Sig::TERM, start), None);
        assert_eq!(delays.admit(Sig::TERM, start), Some(Sig::TERM));
        assert_eq!(delays.next_due(), None);
    }
}
