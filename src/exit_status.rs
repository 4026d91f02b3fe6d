//! How a child ended, and the code ferrinit exits with because of it.

use std::fmt;

use crate::signals::Sig;

/// Exit codes of ferrinit's own making (the rest are the main child's).
pub mod code {
    /// The command line or a FERRINIT_*/TINI_* variable was wrong.
    pub const USAGE: u8 = 2;
    /// ferrinit itself failed (could not block signals, could not fork).
    pub const INTERNAL: u8 = 125;
    /// The command was found but could not be executed.
    pub const NOT_EXECUTABLE: u8 = 126;
    /// The command was not found.
    pub const NOT_FOUND: u8 = 127;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(u8),
    Killed(Sig),
}

impl ChildStatus {
    /// Decodes a `waitpid` status by hand: nix's decoder rejects children killed by a real-time
    /// signal, and that status must not be lost. `None` for stop/continue reports.
    pub fn from_wait_status(status: libc::c_int) -> Option<ChildStatus> {
        if libc::WIFEXITED(status) {
            // WEXITSTATUS is masked to 0..=255 by definition.
            Some(ChildStatus::Exited(libc::WEXITSTATUS(status) as u8))
        } else if libc::WIFSIGNALED(status) {
            Sig::from_number(libc::WTERMSIG(status)).map(ChildStatus::Killed)
        } else {
            None
        }
    }

    /// The shell's convention: the exit code, or 128+N for a death by signal N.
    pub fn shell_code(self) -> u8 {
        match self {
            ChildStatus::Exited(code) => code,
            // Signal numbers stop at 64, so 128+N stays below 256.
            ChildStatus::Killed(sig) => (128 + sig.number()) as u8,
        }
    }
}

impl fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildStatus::Exited(code) => write!(f, "exited with {code}"),
            ChildStatus::Killed(sig) => write!(f, "killed by {sig}"),
        }
    }
}

/// The exit codes that `-e CODE` turns into 0 (tini's `-e`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRemap([u64; 4]);

impl ExitRemap {
    pub fn add(&mut self, code: u8) {
        self.0[usize::from(code / 64)] |= 1 << (code % 64);
    }

    pub fn contains(&self, code: u8) -> bool {
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }

    /// The code ferrinit exits with for this status of its main child.
    pub fn exit_code(&self, status: ChildStatus) -> u8 {
        let code = status.shell_code();
        if self.contains(code) { 0 } else { code }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_death_is_128_plus_n() {
        assert_eq!(ChildStatus::Killed(Sig::TERM).shell_code(), 143);
        assert_eq!(ChildStatus::Killed(Sig::KILL).shell_code(), 137);
        let rtmax = Sig::from_number(64).unwrap();
        assert_eq!(ChildStatus::Killed(rtmax).shell_code(), 192);
    }

    #[test]
    fn remap_turns_listed_codes_into_zero_and_keeps_the_rest() {
        let mut remap = ExitRemap::default();
        remap.add(143);
        remap.add(0);
        remap.add(255);
        assert_eq!(remap.exit_code(ChildStatus::Killed(Sig::TERM)), 0);
        assert_eq!(remap.exit_code(ChildStatus::Exited(143)), 0);
        assert_eq!(remap.exit_code(ChildStatus::Exited(255)), 0);
        assert_eq!(remap.exit_code(ChildStatus::Exited(1)), 1);
        assert_eq!(remap.exit_code(ChildStatus::Exited(142)), 142);
        assert_eq!((0..=255).filter(|&c| remap.contains(c)).count(), 3);
    }

    #[test]
    fn decodes_raw_wait_statuses_including_real_time_deaths() {
        assert_eq!(
            ChildStatus::from_wait_status(3 << 8),
            Some(ChildStatus::Exited(3))
        );
        let rt = libc::SIGRTMIN() + 3;
        assert_eq!(
            ChildStatus::from_wait_status(rt),
            Some(ChildStatus::Killed(Sig::from_number(rt).unwrap()))
        );
        // A stop report (WIFSTOPPED) is not an end.
        assert_eq!(ChildStatus::from_wait_status(0x137f), None);
    }
}
