//! A leaf cgroup v2 for `--contain=cgroup`: made below ferrinit's own cgroup, killed as a whole
//! with `cgroup.kill`, watched through `cgroup.events` until empty, then removed.
//!
//! No controller is ever enabled, so the no-internal-processes rule never bites: ferrinit's own
//! cgroup may keep ferrinit while the leaf holds the command.

mod janitor;

pub use janitor::Janitor;

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;

use crate::mounts;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 mount in /proc/self/mountinfo")]
    NoMount,
    #[error("ferrinit is in no cgroup v2 (no '0::' line in /proc/self/cgroup)")]
    NotInV2,
    #[error("cannot read {0}: {1}")]
    Read(&'static str, #[source] std::io::Error),
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path} has no cgroup.kill (it needs Linux 5.14)")]
    NoKill { path: String },
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot kill the processes of cgroup {path}: {source}")]
    Kill {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the process that removes the cgroup should ferrinit die: {0}")]
    Janitor(#[source] Errno),
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A leaf cgroup of ours. Dropping it removes the directory (best effort, for error paths);
/// the normal end is [`Leaf::kill`], [`Leaf::wait_empty`] and [`Leaf::remove`].
pub struct Leaf {
    path: PathBuf,
    dir: OwnedFd,
    kill: File,
    events: File,
    removed: bool,
}

impl Leaf {
    /// Where our leaf goes: `ferrinit-contain-PID-RANDOM` below ferrinit's own cgroup. The pid
    /// alone could be taken: by a directory a SIGKILLed ferrinit of the same pid left (pids
    /// repeat from one container to the next), or by a ferrinit in another PID namespace that
    /// shares our cgroup.
    pub fn unique_path() -> Result<PathBuf, CgroupError> {
        // RandomState's keys come from the kernel's random source, fresh for each one made.
        let random = RandomState::new().hash_one(0u8) as u32;
        let name = format!("ferrinit-contain-{}-{random:08x}", std::process::id());
        Ok(own_cgroup_dir()?.join(name))
    }

    /// Makes the cgroup at `path` (from [`Leaf::unique_path`]).
    pub fn create(path: PathBuf) -> Result<Leaf, CgroupError> {
        std::fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.display().to_string(),
            source,
        })?;
        // From here on a failure removes the directory again.
        Leaf::open(path.clone()).inspect_err(|_| {
            let _ = std::fs::remove_dir(&path);
        })
    }

    /// The cgroup at `path`, which exists.
    fn open(path: PathBuf) -> Result<Leaf, CgroupError> {
        let shown = path.display().to_string();
        let dir = File::open(&path).map_err(|source| CgroupError::Open {
            path: shown.clone(),
            source,
        })?;
        let kill = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.kill"))
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => CgroupError::NoKill {
                    path: shown.clone(),
                },
                _ => CgroupError::Open {
                    path: format!("{shown}/cgroup.kill"),
                    source,
                },
            })?;
        let events =
            File::open(path.join("cgroup.events")).map_err(|source| CgroupError::Open {
                path: format!("{shown}/cgroup.events"),
                source,
            })?;
        // std opens every file close-on-exec: none of them reaches the command.
        Ok(Leaf {
            path,
            dir: OwnedFd::from(dir),
            kill,
            events,
            removed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For clone3's CLONE_INTO_CGROUP.
    pub fn dir_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// The descriptors ferrinit must keep open.
    pub fn raw_fds(&self) -> [RawFd; 3] {
        [
            self.dir.as_raw_fd(),
            self.kill.as_raw_fd(),
            self.events.as_raw_fd(),
        ]
    }

    /// SIGKILLs every member, even one forking at that moment.
    pub fn kill(&self) -> Result<(), CgroupError> {
        (&self.kill)
            .write_all(b"1")
            .map_err(|source| CgroupError::Kill {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// Waits for `populated 0`, woken by the kernel's notification on `cgroup.events` (no timer
    /// while the deadline is far). Returns whether the cgroup is empty.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        loop {
            match self.populated() {
                Some(false) => return true,
                None => return false,
                Some(true) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut events = libc::pollfd {
                fd: self.events.as_raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            };
            let timeout = libc::c_int::try_from(left.as_millis().saturating_add(1))
                .unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, for the length given.
            if unsafe { libc::poll(&mut events, 1, timeout) } < 0 && Errno::last() != Errno::EINTR {
                return false;
            }
        }
    }

    fn populated(&self) -> Option<bool> {
        let mut text = String::new();
        let mut events = &self.events;
        events.rewind().ok()?;
        events.read_to_string(&mut text).ok()?;
        populated(&text)
    }

    pub fn remove(&mut self) -> Result<(), CgroupError> {
        std::fs::remove_dir(&self.path).map_err(|source| CgroupError::Remove {
            path: self.path.display().to_string(),
            source,
        })?;
        self.removed = true;
        Ok(())
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// `populated 1` / `populated 0` from the text of `cgroup.events`.
fn populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|line| match line.strip_prefix("populated ") {
            Some("0") => Some(false),
            Some("1") => Some(true),
            _ => None,
        })
}

/// The directory of ferrinit's own cgroup v2: the `0::PATH` line of /proc/self/cgroup, below
/// the cgroup2 mount of /proc/self/mountinfo.
fn own_cgroup_dir() -> Result<PathBuf, CgroupError> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| CgroupError::Read("/proc/self/cgroup", e))?;
    let own = mounts::v2_cgroup(&cgroup).ok_or(CgroupError::NotInV2)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| CgroupError::Read("/proc/self/mountinfo", e))?;
    mounts::cgroup_dir(&mountinfo, own, |fstype, _| fstype == "cgroup2").ok_or(CgroupError::NoMount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_populated_from_cgroup_events() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated("frozen 0\n"), None);
    }
}
