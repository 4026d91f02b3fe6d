//! Why the main child ended: one line on stderr when a signal killed it, saying which signal and,
//! where ferrinit can tell, why (the OOM killer, a core dump, a signal ferrinit forwarded); and,
//! with `--exit-report PATH`, the whole ending as one JSON object.
//!
//! The OOM killer leaves no trace in the wait status: it sends SIGKILL like anyone else. What
//! hints at it is the memory cgroup's `oom_kill` counter (cgroup v2 `memory.events`, v1
//! `memory.oom_control`), read once before the child starts and once after it died of SIGKILL.
//! The counter is the cgroup's, not the child's: a rise says the OOM killer killed something in
//! the cgroup meanwhile, which is all ferrinit claims.

use std::ffi::CStr;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::drain::Drained;
use crate::exit_status::ChildStatus;
use crate::fds;
use crate::log::{info, warning};
use crate::mounts;
use crate::signals::Sig;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write the exit report to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the exit report to {}: no process has that FIFO open for reading", path.display())]
    NoReader { path: PathBuf },
}

/// Watches one run, from before the child exists to ferrinit's exit.
pub struct Watch {
    started: Instant,
    oom_counter: Option<OomCounter>,
    report: Option<Report>,
    death: Option<Death>,
}

/// The report's destination, opened once before the child exists and kept to the end: the path
/// may be relative (ferrinit leaves its working directory) or name a descriptor ferrinit closes
/// (`/dev/fd/3`), so it is never opened by name again.
struct Report {
    path: PathBuf,
    file: File,
    kind: Destination,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    /// A regular file of the report's own: emptied at the start, replaced at the end.
    OwnFile,
    /// A regular file that an inherited descriptor also writes to (`/dev/stdout` redirected to
    /// a log): never emptied, the report is appended to what is there.
    SharedFile,
    /// A pipe, FIFO, terminal or device: written once at the end.
    Stream,
}

/// How the main child died, when a signal killed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Death {
    sig: Sig,
    core_dumped: bool,
    /// Died of SIGKILL while the OOM killer killed some process (perhaps this one) in its memory
    /// cgroup. `None`: no memory cgroup counter could be read, so ferrinit cannot tell.
    oom_killed: Option<bool>,
    /// The last signal ferrinit forwarded to the child was this one.
    forwarded: bool,
}

impl Watch {
    /// Call before the child exists: starts the clock, reads the cgroup's OOM-kill counter, and
    /// opens the report (see [`Report::open`]), so that a path that cannot be written fails the
    /// run before anything has run.
    ///
    /// The counter comes first: it opens ferrinit's first descriptor (see [`OomCounter::find`]).
    pub fn start(report: Option<&Path>) -> Result<Watch, ReportError> {
        let started = Instant::now();
        let oom_counter = OomCounter::find();
        let report = report
            .map(|path| {
                // Its slots may be the last that RLIMIT_NOFILE allows.
                fds::close_left_open();
                Report::open(path)
            })
            .transpose()?;
        Ok(Watch {
            started,
            oom_counter,
            report,
            death: None,
        })
    }

    /// The report's descriptor, which ferrinit must keep when it closes what it inherited.
    pub fn kept_fd(&self) -> Option<RawFd> {
        self.report.as_ref().map(|r| r.file.as_raw_fd())
    }

    /// Call once the main child is reaped, before any drain: says on stderr how it died if a
    /// signal killed it: a warning, unless it was only asked to stop.
    pub fn child_ended(&mut self, status: ChildStatus, core_dumped: bool, forwarded: Option<Sig>) {
        let ChildStatus::Killed(sig) = status else {
            return;
        };
        let oom_killed = if sig == Sig::KILL {
            self.oom_counter.as_ref().and_then(OomCounter::rose)
        } else {
            Some(false)
        };
        let death = Death {
            sig,
            core_dumped,
            oom_killed,
            forwarded: forwarded == Some(sig),
        };
        // A request to stop (Ctrl-C at a terminal, a closed pipe, `docker stop`) ended it as
        // asked: that is info. A crash, a core dump, the OOM killer or a SIGKILL is a warning.
        let asked_to_stop = death.forwarded
            || [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&sig.number());
        if asked_to_stop && !death.core_dumped && death.oom_killed != Some(true) {
            info!("{death}");
        } else {
            warning!("{death}");
        }
        self.death = Some(death);
    }

    /// Call last, with ferrinit's exit code: writes the report, if one was asked for. A failure
    /// here is one error line; the exit code stays the child's.
    pub fn finish(&self, code: u8, drained: Drained) {
        let Some(report) = &self.report else {
            return;
        };
        let json = self.json(code, drained);
        if let Err(e) = report.write(json.as_bytes()) {
            crate::log::error!("{e}");
        }
    }

    fn json(&self, code: u8, drained: Drained) -> String {
        let run_time_ms = self.started.elapsed().as_millis();
        let mut json = String::with_capacity(256);
        let _ = write!(json, "{{\"code\":{code},\"signal\":");
        match self.death {
            Some(death) => {
                json.push_str("{\"name\":");
                push_json_string(&mut json, &death.sig.to_string());
                let _ = write!(json, ",\"number\":{}}}", death.sig.number());
            }
            None => json.push_str("null"),
        }
        let core_dumped = self.death.is_some_and(|d| d.core_dumped);
        let oom_killed = match self.death {
            None => "false",
            Some(Death {
                oom_killed: None, ..
            }) => "null",
            Some(Death {
                oom_killed: Some(oom),
                ..
            }) => bool_str(oom),
        };
        let forwarded = self.death.is_some_and(|d| d.forwarded);
        let _ = writeln!(
            json,
            ",\"core_dumped\":{},\"oom_killed\":{oom_killed},\"forwarded\":{},\"drained\":{},\"killed\":{},\"run_time_ms\":{run_time_ms}}}",
            bool_str(core_dumped),
            bool_str(forwarded),
            drained.exited,
            drained.killed,
        );
        json
    }
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "child killed by {} ({})", self.sig, self.sig.number())?;
        let mut causes: Vec<&str> = Vec::new();
        match self.oom_killed {
            // The count is the whole cgroup's: it says the OOM killer acted there, not that its
            // victim was the child (another process may have been, and the child killed itself).
            Some(true) => causes.push(
                "the OOM killer acted in its memory cgroup meanwhile (the oom_kill count rose)",
            ),
            Some(false) if self.sig == Sig::KILL => {
                causes.push("not the OOM killer (the memory cgroup's oom_kill count did not rise)")
            }
            Some(false) => {}
            None => causes.push("possibly the OOM killer (no memory cgroup counter to tell)"),
        }
        if self.forwarded {
            causes.push("forwarded by ferrinit");
        }
        if self.core_dumped {
            causes.push("core dumped");
        }
        if !causes.is_empty() {
            write!(f, ": {}", causes.join("; "))?;
        }
        Ok(())
    }
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

impl Report {
    /// Opens (creating) the report for writing. Without O_TRUNC: `/dev/stdout` may be the same
    /// file the command writes its output to. Non-blocking, so that a FIFO nobody reads fails
    /// at once instead of hanging ferrinit before the child exists; blocking again afterwards,
    /// so that the end's write waits for a slow reader. Close-on-exec: the command never gets it.
    /// A regular file of its own is emptied now, so that no stale report from an earlier run is
    /// left to be misread. (Not O_NOFOLLOW: `/dev/stdout` and `/dev/fd/N` are symbolic links.)
    fn open(path: &Path) -> Result<Report, ReportError> {
        let failed = |source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
                if e.raw_os_error() == Some(libc::ENXIO) && fifo {
                    ReportError::NoReader {
                        path: path.to_path_buf(),
                    }
                } else {
                    failed(e)
                }
            })?;
        // SAFETY: F_SETFL on a descriptor we own; only the status flags change.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        let meta = file.metadata().map_err(failed)?;
        let kind = if !meta.file_type().is_file() {
            Destination::Stream
        } else if shared_with_inherited(&file, &meta) {
            Destination::SharedFile
        } else {
            file.set_len(0).map_err(failed)?;
            Destination::OwnFile
        };
        Ok(Report {
            path: path.to_path_buf(),
            file,
            kind,
        })
    }

    /// Writes the report through the descriptor opened at the start. A file of its own is
    /// rewritten in place, never replaced by rename: Kubernetes' `terminationMessagePath` is a
    /// file bind-mounted into the container.
    fn write(&self, json: &[u8]) -> Result<(), ReportError> {
        let mut file = &self.file;
        match self.kind {
            Destination::OwnFile => file.set_len(0).and_then(|()| file.write_all_at(json, 0)),
            Destination::SharedFile => file
                .seek(SeekFrom::End(0))
                .and_then(|_| file.write_all(json)),
            Destination::Stream => file.write_all(json),
        }
        .map_err(|source| ReportError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Whether another descriptor ferrinit holds (its stdout, say: all it holds now is inherited,
/// or a copy of its stderr) is open on the same file as `file`.
fn shared_with_inherited(file: &File, meta: &std::fs::Metadata) -> bool {
    let own = file.as_raw_fd();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // No /proc: the three standard ones at least.
        return (0..=2).any(|fd| same_file(fd, meta));
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| fd != own)
        .any(|fd| same_file(fd, meta))
}

fn same_file(fd: RawFd, meta: &std::fs::Metadata) -> bool {
    // SAFETY: stat is plain data; fstat fills it in, or fails on a closed descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is valid writable storage.
    let found = unsafe { libc::fstat(fd, &mut stat) } == 0;
    found && stat.st_dev == meta.dev() && stat.st_ino == meta.ino()
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The `oom_kill` counter of ferrinit's memory cgroup, which the child starts in.
struct OomCounter {
    before: u64,
}

impl OomCounter {
    fn find() -> Option<OomCounter> {
        Some(OomCounter {
            before: read_counter(Descriptors::Leave)?,
        })
    }

    /// Whether the OOM killer killed anything in the cgroup since the start.
    /// `None` if the counter cannot be read now (no descriptor left, say): then ferrinit cannot
    /// tell, and must not claim it was not the OOM killer.
    fn rose(&self) -> Option<bool> {
        read_counter(Descriptors::Close).map(|now| now > self.before)
    }
}

/// What becomes of the descriptors [`read_counter`] opens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Descriptors {
    /// At start-up: left open (close-on-exec), for the sweep of what ferrinit inherited to close
    /// right after the spawn, instead of a close each (`fds::leave_open`). The first is
    /// ferrinit's first descriptor, which tells whether stdio is all open (`fds::open_first`).
    Leave,
    Close,
}

/// The counter now: cgroup v1 `memory.oom_control` if the memory controller is on a v1
/// hierarchy, else cgroup v2 `memory.events`. A controller lives in one hierarchy only, so at
/// most one applies. `None` when there is no memory controller to read, or it cannot be read.
///
/// Every run reads it at start-up, so the usual case (hierarchies mounted where systemd, Docker
/// and Kubernetes mount them, whole) allocates nothing and makes four system calls. Only a
/// hierarchy mounted elsewhere, or in part (a container's bind mount), costs a read of the
/// mount table.
fn read_counter(descriptors: Descriptors) -> Option<u64> {
    let mut buf = [const { MaybeUninit::uninit() }; 2048];
    let fd = match descriptors {
        Descriptors::Leave => fds::open_first(c"/proc/self/cgroup")?,
        Descriptors::Close => open(c"/proc/self/cgroup")?,
    };
    let whole;
    let cgroups = match read_fd(fd, &mut buf, descriptors) {
        Some(cgroups) => cgroups,
        // Too long for the buffer: many hierarchies with long paths (a Kubernetes node on
        // cgroup v1 with the systemd driver has a dozen, of 150 bytes and more each).
        None => {
            whole = read_small(Path::new("/proc/self/cgroup"))?;
            whole.as_bytes()
        }
    };
    conventional_count(cgroups, descriptors).or_else(|| {
        let cgroups = std::str::from_utf8(cgroups).ok()?;
        let mountinfo = read_small(Path::new("/proc/self/mountinfo"))?;
        let file = counter_file(cgroups, &mountinfo)?;
        oom_kill_count(read_small(&file)?.as_bytes())
    })
}

/// The counter under `/sys/fs/cgroup/memory` (v1), or `/sys/fs/cgroup` or, on a hybrid host,
/// `/sys/fs/cgroup/unified` (v2).
fn conventional_count(cgroups: &[u8], descriptors: Descriptors) -> Option<u64> {
    match mounts::v1_memory_cgroup_bytes(cgroups) {
        Some(path) => count_at(
            &[b"/sys/fs/cgroup/memory", path, b"/memory.oom_control"],
            descriptors,
        ),
        None => {
            let path = mounts::v2_cgroup_bytes(cgroups)?;
            [&b"/sys/fs/cgroup"[..], b"/sys/fs/cgroup/unified"]
                .iter()
                .find_map(|mount| count_at(&[mount, path, b"/memory.events"], descriptors))
        }
    }
}

/// The counter in the file whose path is `parts` joined, built on the stack.
fn count_at(parts: &[&[u8]], descriptors: Descriptors) -> Option<u64> {
    // Longer paths are left to the fallback, which reads the mount table anyway.
    let mut path: [MaybeUninit<u8>; 512] = [const { MaybeUninit::uninit() }; 512];
    let mut len = 0;
    for part in parts.iter().chain([&&b"\0"[..]]) {
        let slots = path.get_mut(len..len + part.len())?;
        // SAFETY: `slots` is writable for exactly `part.len()` bytes, and apart from `part`.
        unsafe {
            std::ptr::copy_nonoverlapping(part.as_ptr(), slots.as_mut_ptr().cast(), part.len())
        };
        len += part.len();
    }
    // SAFETY: the first `len` bytes were written just above.
    let path = unsafe { std::slice::from_raw_parts(path.as_ptr().cast::<u8>(), len) };
    // The one NUL must be the last byte (a NUL inside the cgroup's path cannot be opened).
    if mounts::find_byte(path, 0)? != len - 1 {
        return None;
    }
    // SAFETY: checked just above.
    let file = unsafe { CStr::from_bytes_with_nul_unchecked(path) };
    let mut buf = [const { MaybeUninit::uninit() }; 512];
    oom_kill_count(read_fd(open(file)?, &mut buf, descriptors)?)
}

/// Under a tight RLIMIT_NOFILE, in the slot of /proc/self/cgroup, left for the sweep.
fn open(path: &CStr) -> Option<RawFd> {
    fds::open_or_make_room(|| {
        // SAFETY: a valid C string.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        (fd >= 0).then_some(fd)
    })
}

/// A small file read whole into `buf` with one read, then closed or not as `descriptors` says.
/// `None` if it does not fit. (`buf` is not zeroed first: this runs at every start.)
fn read_fd(fd: RawFd, buf: &mut [MaybeUninit<u8>], descriptors: Descriptors) -> Option<&[u8]> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match descriptors {
        Descriptors::Leave => fds::leave_open(fd),
        // SAFETY: the caller's descriptor, which it hands over.
        Descriptors::Close => unsafe {
            libc::close(fd);
        },
    }
    let n = usize::try_from(n).ok().filter(|&n| n < buf.len())?;
    // SAFETY: the read filled the first `n` bytes.
    Some(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) })
}

/// A /proc or cgroup file of any size, for the rare fallback.
fn read_small(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
fn oom_kill_count(text: &[u8]) -> Option<u64> {
    // A few short lines: looked at one by one.
    let mut line = 0;
    while !mounts::starts_with_at(text, line, b"oom_kill ") {
        line += mounts::find_byte(text.get(line..)?, b'\n')? + 1;
    }
    text[line + b"oom_kill ".len()..]
        .iter()
        .take_while(|d| d.is_ascii_digit())
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
}

/// Where the counter of the cgroup described by `/proc/self/cgroup` is, given the mount table.
fn counter_file(cgroups: &str, mountinfo: &str) -> Option<PathBuf> {
    if let Some(path) = mounts::v1_memory_cgroup(cgroups) {
        let dir = mounts::cgroup_dir(mountinfo, path, |fstype, options| {
            fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        })?;
        return Some(dir.join("memory.oom_control"));
    }
    let path = mounts::v2_cgroup(cgroups)?;
    let dir = mounts::cgroup_dir(mountinfo, path, |fstype, _| fstype == "cgroup2")?;
    Some(dir.join("memory.events"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUPS: &str = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_v1_memory_counter_on_a_hybrid_host() {
        assert_eq!(
            counter_file(HYBRID_CGROUPS, HYBRID_MOUNTS),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/process_api/abc/memory.oom_control"
            ))
        );
    }

    #[test]
    fn finds_the_v2_counter_relative_to_a_container_mount() {
        let mounts = "1 0 0:1 / / rw - overlay overlay rw\n\
                      9 1 0:30 /pods/pod\\0401/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            counter_file("0::/pods/pod 1/ctr\n", mounts),
            Some(PathBuf::from("/sys/fs/cgroup/memory.events"))
        );
        assert_eq!(
            counter_file("0::/pods/pod 1/ctr/sub\n", mounts),
            Some(PathBuf::from("/sys/fs/cgroup/sub/memory.events"))
        );
        // Not under that mount's root ("/pods/pod 10" is not inside "/pods/pod 1").
        assert_eq!(counter_file("0::/pods/pod 10\n", mounts), None);
        assert_eq!(counter_file("", HYBRID_MOUNTS), None);
    }

    #[test]
    fn reads_the_oom_kill_line_of_either_version() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1.as_bytes()), Some(3));
        assert_eq!(oom_kill_count(v2.as_bytes()), Some(1));
        assert_eq!(oom_kill_count(b"oom_kill_disable 0\n"), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn the_report_is_one_json_object_on_one_line() {
        let mut watch = Watch {
            started: Instant::now(),
            oom_counter: None,
            report: None,
            death: None,
        };
        let drained = Drained {
            exited: 2,
            killed: 1,
        };
        let json = watch.json(3, drained);
        assert!(json.starts_with(
            r#"{"code":3,"signal":null,"core_dumped":false,"oom_killed":false,"forwarded":false,"drained":2,"killed":1,"run_time_ms":"#
        ), "{json}");
        assert!(json.ends_with("}\n") && json.lines().count() == 1, "{json}");
        watch.child_ended(ChildStatus::Killed(Sig::KILL), false, Some(Sig::TERM));
        let json = watch.json(137, Drained::default());
        assert!(json.contains(r#""signal":{"name":"SIGKILL","number":9},"core_dumped":false,"oom_killed":null,"forwarded":false"#), "{json}");
    }
}
