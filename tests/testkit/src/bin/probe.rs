//! The child that ferrinit's tests run: it reports what it inherited and what it receives, one
//! line at a time on stdout, and makes orphans, stragglers and other trouble on request.
//!
//! Its own `main` (no Rust runtime start-up), so that `probe state` reports exactly the signal
//! state it was exec'd with: Rust's runtime would set SIGPIPE to SIG_IGN first.

#![no_main]

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{ForkResult, Pid, fork, getpid};

const USAGE: &str = "\
usage: probe MODE [ARGS]
  exit CODE            exit with CODE
  die SIG              die of signal SIG (number)
  state                print the signal state, process group, cwd, fds, argv and env inherited
  signals [TAG]        print 'TAG ready', then 'TAG got SIGNAME' for every signal; exit 0 at EOF
  group [setsid]       'signals leader', plus a grandchild in the same group: 'signals member'
                       (with setsid, the grandchild escapes into a session of its own first)
  kill-init SIG        send SIG (number) to PID 1 and wait for it to come back: 'got SIGNAME'
  orphans N            make N orphans; 'orphans N' once re-parented, 'orphans-exited N' once dead
  wave N [BURSTS]      BURSTS times (default 1), make N orphans that exit at once, as fast as
                       possible, saying 'wave-progress M' after every 1000th; then 'wave-done N'
                       and wait for stdin EOF
  straggler MODE [CODE]
                       fork a grandchild in its own group that outlives us, print 'straggler PID
                       ready', then exit with CODE at once (or 0 at stdin EOF). MODE 'term': it
                       prints 'straggler got SIGNAME' for TERM, INT, HUP, QUIT or USR1 and exits;
                       'stubborn': it ignores every signal; 'spawner': on TERM it forks a stubborn
                       process, prints 'spawned PID' and exits
  setuid-root TAG      become root for real (a setuid-root copy of the probe), then 'signals TAG'
  storm-target [quiet] count every signal received while a thread forks children (checking
                       that none is hit by a signal) and orphans (not with 'quiet'); at stdin
                       EOF print 'received SIGNAME N' lines, 'churn N bad K', and exit 42
  echo-signal SIG      print 'ready', then write one byte to stdout per SIG received
  tree N               fork N processes that print 'done' and exit on SIGTERM; 'tree ready';
                       then wait for SIGTERM (its default action)
  exit-after N CODE    handle every signal; after N of them, exit with CODE
  orphans-then-exit N CODE
                       make N orphans, then release them and exit CODE in the same instant
  state-file PATH      'state', written to PATH (for runs with stdout closed)
  digest               'args N HASH' and 'env N HASH' (FNV-1a of the raw bytes)
  drop-tty CODE        give up the controlling terminal, close 0-2, exit CODE
  ignore-all           ignore every signal, print 'ready', exit 0 at EOF
  wait                 print 'ready', exit 0 at stdin EOF
  tty-read             print 'ready', then read one line from stdin and echo it: 'read LINE'
  siginfo [TAG]        block all 64 signals but KILL and STOP (32 and 33 too), print 'TAG
                       ready', then 'TAG got SIGNAME code C value V from PID' for each one
                       taken with sigwaitinfo, in order; exit 0 at stdin EOF
  leave-group          move into another process group (a grandchild's, which then waits for
                       stdin EOF), leaving ours empty; then 'siginfo'
  traceme PROG ARGS    PTRACE_TRACEME, then exec PROG ARGS: ferrinit becomes our tracer
  orphan-traceme       make an orphan that, once re-parented, calls PTRACE_TRACEME and execs
                       'probe siginfo orphan'; then wait for stdin EOF
  fake-parent PID      fork a stubborn straggler (as 'straggler stubborn') that bind-mounts over
                       /proc/PID/stat a copy naming itself as PID's parent, prints 'faked PID',
                       then exit 0 (needs root and a private mount namespace)
  tty-prompt           as a password prompt does: open /dev/tty, print 'ready', read one line
                       from /dev/tty and print 'read LINE'
  tty-yield            hand the terminal's foreground to the parent's process group, print
                       'yielded', then read one line from stdin (stopped by SIGTTIN until the
                       terminal comes back) and print 'read LINE'
  marker CODE          start a marker: setsid, double-forked, ignoring TERM, stdio on /dev/null;
                       once it is ready, print 'marker PID uid UID' (its pid as seen here), then
                       exit CODE at stdin EOF
  no-room CMD [ARG]... run CMD where nothing may be created: in a user namespace of its own
                       (run as root) with user.max_user_namespaces=0, as uid/gid 65534; exit
                       with its status
  no-syscall NR ERRNO CMD [ARG]...
                       exec CMD under a seccomp filter that fails system call NR with ERRNO
                       (as a kernel or container profile without that call would)
";

#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // Before anything else can change it.
    let inherited_status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let inherited_fds = open_fds();
    // Lossy: only the mode and its numbers need to be text; `state` reports the raw bytes.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let number = |i: usize| arg(i).parse::<i32>().unwrap_or_else(|_| usage());
    match arg(0) {
        "exit" => number(1),
        "die" => die(number(1)),
        "state" => state(&inherited_status, &inherited_fds, &mut std::io::stdout()),
        "signals" => signals(if arg(1).is_empty() { "probe" } else { arg(1) }),
        "group" => group(arg(1) == "setsid"),
        "kill-init" => kill_init(number(1)),
        "orphans" => orphans(number(1) as usize),
        "wave" => wave(number(1) as usize, arg(2).parse().unwrap_or(1)),
        "straggler" => straggler(arg(1), arg(2).parse().ok()),
        "setuid-root" => {
            // SAFETY: plain syscall; only works from a setuid-root copy of the probe.
            let became = unsafe { libc::setresuid(0, 0, 0) } == 0;
            assert!(became, "setresuid(0): {}", std::io::Error::last_os_error());
            signals(arg(1))
        }
        "storm-target" => storm_target(arg(1) != "quiet"),
        "echo-signal" => echo_signal(number(1)),
        "tree" => tree(number(1) as usize),
        "exit-after" => exit_after(number(1) as usize, number(2)),
        "orphans-then-exit" => orphans_then_exit(number(1) as usize, number(2)),
        "state-file" => {
            let mut out = std::fs::File::create(arg(1)).expect("state file");
            state(&inherited_status, &inherited_fds, &mut out)
        }
        "digest" => digest(),
        "drop-tty" => drop_tty(number(1)),
        "ignore-all" => ignore_all(),
        "wait" => {
            say("ready");
            wait_for_eof()
        }
        "tty-read" => tty_read(),
        "siginfo" => siginfo(if arg(1).is_empty() { "probe" } else { arg(1) }),
        "leave-group" => leave_group(),
        "traceme" => traceme(&args[1..]),
        "orphan-traceme" => orphan_traceme(),
        "fake-parent" => fake_parent(number(1)),
        "tty-prompt" => tty_prompt(),
        "tty-yield" => tty_yield(),
        "marker" => marker(number(1)),
        "no-room" if args.len() > 1 => no_room(&args[1..]),
        "no-syscall" if args.len() > 3 => no_syscall(number(1), number(2), &args[3..]),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprint!("{USAGE}");
    std::process::exit(2)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn wait_for_eof() -> i32 {
    let mut sink = Vec::new();
    let _ = std::io::stdin().lock().read_until(0, &mut sink);
    0
}

pub fn signal_name(n: i32) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match n {
        n if n == min => "SIGRTMIN".into(),
        n if n == max => "SIGRTMAX".into(),
        n if n > min && n < max => format!("SIGRTMIN+{}", n - min),
        n => Signal::try_from(n).map_or(format!("SIG{n}"), |s| s.as_str().into()),
    }
}

fn die(sig: i32) -> i32 {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on valid arguments; resetting to SIG_DFL and unblocking makes the
    // raised signal kill us.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    eprintln!("probe: signal {sig} did not kill us");
    1
}

/// The descriptors open right now, without the one that lists them.
fn open_fds() -> Vec<i32> {
    let own_dir = format!("/proc/{}/fd", getpid());
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).map_or(true, |t| t.as_os_str() != own_dir.as_str())
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

fn state(inherited_status: &str, inherited_fds: &[i32], out: &mut dyn Write) -> i32 {
    let mut say = |line: &str| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let field = |name: &str| {
        inherited_status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or("?")
            .trim()
            .to_owned()
    };
    say(&format!("blocked {}", field("SigBlk")));
    say(&format!("ignored {}", field("SigIgn")));
    say(&format!("caught {}", field("SigCgt")));
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 1)..]
        .split_whitespace()
        .collect();
    // state ppid pgrp session tty_nr tpgid
    say(&format!(
        "pid {} ppid {} pgid {} sid {} tpgid {}",
        getpid(),
        after.get(1).unwrap_or(&"?"),
        after.get(2).unwrap_or(&"?"),
        after.get(3).unwrap_or(&"?"),
        after.get(5).unwrap_or(&"?"),
    ));
    let cwd = std::env::current_dir().map(|p| p.display().to_string());
    say(&format!("cwd {}", cwd.unwrap_or_else(|e| format!("? {e}"))));
    let fds: Vec<String> = inherited_fds.iter().map(i32::to_string).collect();
    say(&format!("fds {}", fds.join(" ")));
    for arg in std::env::args_os() {
        say(&format!("arg {}", hex(arg.as_bytes())));
    }
    for (name, value) in std::env::vars_os() {
        let mut entry = name.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        say(&format!("env {}", hex(&entry)));
    }
    0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every signal a program can install a handler for, except SIGCHLD (our own children's noise).
fn catchable() -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|&n| !signal_hook::consts::FORBIDDEN.contains(&n))
        .filter(|&n| n != libc::SIGCHLD && !(32..libc::SIGRTMIN()).contains(&n))
        .collect()
}

/// Handles signals as an ordinary program does (signal-hook handlers), reporting each one.
fn signals(tag: &str) -> i32 {
    let mut received = signal_hook::iterator::Signals::new(catchable()).expect("register handlers");
    std::thread::spawn(|| std::process::exit(wait_for_eof()));
    say(&format!("{tag} ready"));
    for sig in received.forever() {
        say(&format!("{tag} got {}", signal_name(sig)));
    }
    0
}

fn group(escape: bool) -> i32 {
    // SAFETY: single-threaded at this point; the child goes straight on to ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            if escape {
                nix::unistd::setsid().expect("setsid");
            }
            signals("member")
        }
        ForkResult::Parent { .. } => signals("leader"),
    }
}

fn kill_init(sig: i32) -> i32 {
    let mut received = signal_hook::iterator::Signals::new([sig]).expect("register handler");
    // SAFETY: kill has no memory-safety preconditions.
    let sent = unsafe { libc::kill(1, sig) };
    assert_eq!(sent, 0, "kill(1, {sig})");
    if let Some(got) = received.forever().next() {
        say(&format!("got {}", signal_name(got)));
    }
    0
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

/// N grandchildren whose parents exit at once: they are re-parented to the init. They wait on a
/// pipe, so that each is alive (and pinned by a pidfd) before any of them exits.
fn orphans(count: usize) -> i32 {
    let (release_read, release_write) = pipe();
    let (report_read, report_write) = pipe();
    for _ in 0..count {
        // SAFETY: single-threaded; both children only make async-signal-safe calls and _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                match libc::fork() {
                    0 => {
                        let mut byte = 0u8;
                        libc::close(release_write.as_raw_fd());
                        libc::read(release_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                        libc::_exit(0)
                    }
                    grandchild => {
                        libc::write(report_write.as_raw_fd(), (&raw const grandchild).cast(), 4);
                        libc::_exit(0)
                    }
                }
            },
            ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).expect("reap the middle process");
            }
        }
    }
    drop(report_write);
    drop(release_read);
    let mut pids = Vec::with_capacity(count);
    let mut report = std::fs::File::from(report_read);
    let mut buf = [0u8; 4];
    while pids.len() < count {
        std::io::Read::read_exact(&mut report, &mut buf).expect("grandchild pid");
        pids.push(i32::from_ne_bytes(buf));
    }
    let pidfds: Vec<OwnedFd> = pids.iter().filter_map(|&p| pidfd_open(p)).collect();
    assert_eq!(pidfds.len(), count, "every orphan is alive until released");
    say(&format!("orphans {count}"));
    drop(release_write);
    for pidfd in &pidfds {
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::NONE).expect("poll pidfd");
    }
    say(&format!("orphans-exited {count}"));
    wait_for_eof()
}

/// N orphans that exit immediately, as fast as fork allows (load for the reaper). The progress
/// lines let a test tell a slow machine from a stuck one.
fn wave(count: usize, bursts: usize) -> i32 {
    for made in 1..=count * bursts {
        // SAFETY: both children only call _exit/fork.
        match unsafe { libc::fork() } {
            0 => unsafe {
                libc::fork();
                libc::_exit(0)
            },
            -1 => {
                eprintln!("probe: fork failed: {}", std::io::Error::last_os_error());
                return 1;
            }
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
        if made % 1000 == 0 {
            say(&format!("wave-progress {made}"));
        }
    }
    say(&format!("wave-done {count}"));
    wait_for_eof()
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A grandchild that outlives us, for the drain: it reports the signal it gets, or ignores them.
fn straggler(mode: &str, exit_code: Option<i32>) -> i32 {
    if !matches!(mode, "term" | "stubborn" | "spawner") {
        usage();
    }
    let (ready_read, ready_write) = pipe();
    // SAFETY: single-threaded here; the grandchild continues with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ready_read);
            // Its own group, so that only a drain (never a forward to the child) reaches it.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            match mode {
                "term" => {
                    let drain_signals = [
                        libc::SIGTERM,
                        libc::SIGINT,
                        libc::SIGHUP,
                        libc::SIGQUIT,
                        libc::SIGUSR1,
                    ];
                    let mut received =
                        signal_hook::iterator::Signals::new(drain_signals).expect("handlers");
                    say(&format!("straggler {} ready", getpid()));
                    drop(ready_write);
                    if let Some(sig) = received.forever().next() {
                        say(&format!("straggler got {}", signal_name(sig)));
                    }
                }
                "spawner" => {
                    let mut received =
                        signal_hook::iterator::Signals::new([libc::SIGTERM]).expect("handler");
                    say(&format!("straggler {} ready", getpid()));
                    drop(ready_write);
                    received.forever().next();
                    // SAFETY: still single-threaded (signal-hook's iterator starts no thread).
                    if let ForkResult::Child = unsafe { fork() }.expect("fork") {
                        stubborn(|| say(&format!("spawned {}", getpid())));
                    }
                }
                _ => stubborn(|| {
                    say(&format!("straggler {} ready", getpid()));
                    drop(ready_write);
                }),
            }
            std::process::exit(0)
        }
        ForkResult::Parent { .. } => {
            drop(ready_write);
            // Ready once the straggler has closed its end.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(ready_read), &mut sink);
            match exit_code {
                Some(code) => code,
                None => wait_for_eof(),
            }
        }
    }
}

/// Ignores every signal it can, says it is ready, and sleeps until SIGKILL.
fn stubborn(ready: impl FnOnce()) -> ! {
    for n in catchable() {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(n, libc::SIG_IGN) };
    }
    ready();
    loop {
        nix::unistd::pause();
    }
}

fn ignore_all() -> i32 {
    for n in catchable() {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(n, libc::SIG_IGN) };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).expect("unblock");
    say("ready");
    wait_for_eof()
}

fn tty_read() -> i32 {
    say("ready");
    tty_read_line()
}

fn tty_read_line() -> i32 {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) => {
            say(&format!("read {}", line.trim_end()));
            0
        }
        Err(e) => {
            say(&format!("read-error {e}"));
            1
        }
    }
}

/// The storm's target: counts what arrives (in the handlers themselves, so that nothing delivered
/// goes uncounted) while a thread churns out children and orphans.
fn storm_target(churn_on: bool) -> i32 {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    static COUNTS: [AtomicUsize; 65] = [const { AtomicUsize::new(0) }; 65];
    static STOP: AtomicBool = AtomicBool::new(false);
    let signals = catchable();
    for &sig in &signals {
        // SAFETY: the handler only touches an atomic: async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                COUNTS[sig as usize].fetch_add(1, Ordering::Relaxed);
            })
        }
        .expect("register handler");
    }
    let churn = std::thread::spawn(move || {
        let (mut churned, mut hit) = (0usize, 0usize);
        while churn_on && !STOP.load(Ordering::Relaxed) {
            // SAFETY: the child only calls fork and _exit.
            match unsafe { libc::fork() } {
                0 => unsafe {
                    // Every other one leaves an orphan behind for ferrinit to reap.
                    if churned % 2 == 0 {
                        libc::fork();
                    }
                    libc::_exit(0)
                },
                -1 => continue,
                child => {
                    let status = loop {
                        let mut status = 0;
                        // SAFETY: waiting for our own child.
                        if unsafe { libc::waitpid(child, &mut status, 0) } == child {
                            break status;
                        }
                    };
                    // Killed, or stopped: a signal reached a process it was not meant for.
                    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                        hit += 1;
                    }
                    churned += 1;
                }
            }
        }
        (churned, hit)
    });
    say("storm-target ready");
    wait_for_eof();
    STOP.store(true, Ordering::Relaxed);
    let (churned, hit) = churn.join().expect("churn thread");
    // Every signal that reached us has run its handler once nothing is pending any more.
    let pending = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|mask| u64::from_str_radix(mask, 16) != Ok(0))
            })
    };
    while pending() {
        std::thread::yield_now();
    }
    for sig in signals {
        let count = COUNTS[sig as usize].load(Ordering::Relaxed);
        if count > 0 {
            say(&format!("received {} {count}", signal_name(sig)));
        }
    }
    say(&format!("churn {churned} bad {hit}"));
    42
}

fn exit_after(count: usize, code: i32) -> i32 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    // Counted and ended in the handler itself: under a flood the kernel may run nothing but
    // handlers, and a count kept by the main thread would never be reached.
    for sig in catchable() {
        // SAFETY: the handler touches an atomic and calls _exit: async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if SEEN.fetch_add(1, Ordering::Relaxed) + 1 >= count {
                    libc::_exit(code);
                }
            })
        }
        .expect("register handler");
    }
    say("ready");
    loop {
        nix::unistd::pause();
    }
}

fn orphans_then_exit(count: usize, code: i32) -> i32 {
    let (release_read, release_write) = pipe();
    for _ in 0..count {
        // SAFETY: the children only make async-signal-safe calls and _exit.
        match unsafe { libc::fork() } {
            0 => unsafe {
                if libc::fork() == 0 {
                    let mut byte = 0u8;
                    libc::close(release_write.as_raw_fd());
                    libc::read(release_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                }
                libc::_exit(0)
            },
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
    say(&format!("orphans {count}"));
    // Closing the last write end wakes every orphan, and we exit in the same breath.
    drop(release_read);
    drop(release_write);
    code
}

/// FNV-1a, 64 bits: enough to tell a byte-for-byte copy from anything else.
fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut hash: u64) -> u64 {
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

fn digest() -> i32 {
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let args_hash = args.iter().fold(SEED, |h, a| {
        fnv1a(a.as_bytes().iter().copied().chain([0]), h)
    });
    say(&format!("args {} {args_hash:016x}", args.len()));
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    let env_hash = env.iter().fold(SEED, |h, (k, v)| {
        let entry = k
            .as_bytes()
            .iter()
            .copied()
            .chain([b'='])
            .chain(v.as_bytes().iter().copied());
        fnv1a(entry.chain([0]), h)
    });
    say(&format!("env {} {env_hash:016x}", env.len()));
    0
}

fn drop_tty(code: i32) -> i32 {
    say("dropping the terminal");
    // SAFETY: plain syscalls on descriptors we own.
    unsafe {
        libc::ioctl(0, libc::TIOCNOTTY);
        libc::close(0);
        libc::close(1);
        libc::close(2);
    }
    code
}

/// One byte out per signal in, with nothing in between: a signal's round trip, for benchmarks.
fn echo_signal(sig: i32) -> i32 {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid storage and a valid signal number.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    say("ready");
    loop {
        // SAFETY: `set` is initialised; a null siginfo is allowed.
        if unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) } == sig {
            // SAFETY: writing one byte from a valid buffer to stdout.
            if unsafe { libc::write(1, b"!".as_ptr().cast(), 1) } != 1 {
                return 0;
            }
        }
    }
}

/// A cooperating process tree: N processes that finish their work on SIGTERM ('done') and exit.
fn tree(count: usize) -> i32 {
    let (ready_read, ready_write) = pipe();
    for _ in 0..count {
        // SAFETY: single-threaded; the child continues with ordinary code.
        if let ForkResult::Child = unsafe { fork() }.expect("fork") {
            drop(ready_read);
            let mut term = signal_hook::iterator::Signals::new([libc::SIGTERM]).expect("handler");
            drop(ready_write);
            if term.forever().next().is_some() {
                say("done");
            }
            std::process::exit(0)
        }
    }
    drop(ready_write);
    // Ready once every member holds its handler and has closed its end.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(ready_read), &mut sink);
    say("tree ready");
    loop {
        nix::unistd::pause();
    }
}

/// Every signal but SIGKILL and SIGSTOP, as the kernel's mask (signal N is bit N-1), 32 and 33
/// included: glibc's own calls would leave those out.
const ALL_BUT_KILL_AND_STOP: u64 = !((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)));

/// Blocks every signal but SIGKILL and SIGSTOP in the calling thread.
fn block_all_raw() {
    let all = ALL_BUT_KILL_AND_STOP;
    // SAFETY: a kernel sigset of the size passed.
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            std::ptr::null_mut::<u64>(),
            8,
        )
    };
    assert_eq!(blocked, 0, "rt_sigprocmask");
}

/// Takes every signal in order with sigwaitinfo, reporting each with its siginfo: real-time
/// instances one by one, with their sigqueue value and sender.
fn siginfo(tag: &str) -> i32 {
    let all = ALL_BUT_KILL_AND_STOP;
    block_all_raw();
    // glibc's first thread unblocks 32 and 33 in the caller, and starts the thread with them
    // unblocked: block them again in both before saying ready, or they would kill us.
    let (blocked, thread_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        block_all_raw();
        let _ = blocked.send(());
        std::process::exit(wait_for_eof())
    });
    thread_ready.recv().expect("thread blocked its signals");
    block_all_raw();
    say(&format!("{tag} ready"));
    loop {
        // SAFETY: siginfo_t is plain data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a kernel sigset of the size passed and storage for one siginfo_t.
        let sig = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &all as *const u64,
                &mut info as *mut libc::siginfo_t,
                std::ptr::null::<libc::timespec>(),
                8,
            )
        };
        if sig <= 0 {
            continue;
        }
        // SAFETY: the kernel filled in `info`; the value is only meaningful for SI_QUEUE and is
        // printed as it is.
        let (value, sender) = unsafe { (info.si_value().sival_ptr as usize, info.si_pid()) };
        say(&format!(
            "{tag} got {} code {} value {value} from {sender}",
            signal_name(sig as i32),
            info.si_code
        ));
    }
}

fn leave_group() -> i32 {
    let (ready_read, ready_write) = pipe();
    // SAFETY: single-threaded; the child continues with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ready_read);
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).expect("setpgid");
            drop(ready_write);
            std::process::exit(wait_for_eof())
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(ready_read), &mut sink);
            nix::unistd::setpgid(Pid::from_raw(0), child).expect("join the grandchild's group");
            siginfo("probe")
        }
    }
}

fn traceme(command: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        usage()
    };
    // SAFETY: PTRACE_TRACEME takes no pointers.
    let traced = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    assert_eq!(
        traced,
        0,
        "PTRACE_TRACEME: {}",
        std::io::Error::last_os_error()
    );
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!("probe: exec {program}: {error}");
    127
}

fn orphan_traceme() -> i32 {
    // SAFETY: single-threaded; the children continue with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let middle = getpid();
            // SAFETY: as above.
            if let ForkResult::Parent { .. } = unsafe { fork() }.expect("fork") {
                std::process::exit(0)
            }
            // Re-parented once the middle process has exited.
            while nix::unistd::getppid() == middle {
                std::thread::yield_now();
            }
            let me = std::env::current_exe().expect("own path");
            let me = me.to_string_lossy().into_owned();
            std::process::exit(traceme(&[me, "siginfo".into(), "orphan".into()]))
        }
        ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).expect("reap the middle process");
            wait_for_eof()
        }
    }
}

/// A straggler that lies about its children: /proc/VICTIM/stat, as mounted over by it, names it
/// as VICTIM's parent. Whoever trusts /proc then takes VICTIM for its descendant.
fn fake_parent(victim: i32) -> i32 {
    let (ready_read, ready_write) = pipe();
    // SAFETY: single-threaded here; the grandchild continues with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ready_read);
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let target = format!("/proc/{victim}/stat");
            let real = std::fs::read_to_string(&target).expect("victim's stat");
            let comm_end = real.rfind(')').expect("stat holds a comm") + 1;
            let mut fields: Vec<&str> = real[comm_end..].split_whitespace().collect();
            let me = getpid().to_string();
            // After comm: state(0) ppid(1) ...
            fields[1] = &me;
            let fake = format!("{} {}\n", &real[..comm_end], fields.join(" "));
            let copy = std::env::temp_dir().join(format!("probe-fake-stat-{me}"));
            std::fs::write(&copy, fake).expect("write the fake stat");
            let source = std::ffi::CString::new(copy.as_os_str().as_bytes()).expect("path");
            let target = std::ffi::CString::new(target).expect("path");
            // SAFETY: valid C strings; a bind mount takes no file system type or data.
            let mounted = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            assert_eq!(
                mounted,
                0,
                "bind mount: {}",
                std::io::Error::last_os_error()
            );
            // The mount keeps the file; nothing else needs its name.
            let _ = std::fs::remove_file(&copy);
            stubborn(|| {
                say(&format!("faked {victim}"));
                drop(ready_write);
            })
        }
        ForkResult::Parent { .. } => {
            drop(ready_write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(ready_read), &mut sink);
            0
        }
    }
}

fn tty_prompt() -> i32 {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .expect("open /dev/tty");
    say("ready");
    let mut line = String::new();
    match std::io::BufReader::new(tty).read_line(&mut line) {
        Ok(_) => {
            say(&format!("read {}", line.trim_end()));
            0
        }
        Err(e) => {
            say(&format!("read-error {e}"));
            1
        }
    }
}

fn tty_yield() -> i32 {
    let parent_group = nix::unistd::getpgid(Some(nix::unistd::getppid())).expect("getpgid");
    nix::unistd::tcsetpgrp(std::io::stdin(), parent_group).expect("tcsetpgrp");
    say("yielded");
    tty_read_line()
}

/// A process that `--contain` must stop: it escapes the command's session and parent, and
/// ignores SIGTERM.
fn marker(code: i32) -> i32 {
    let (ready_read, ready_write) = pipe();
    // SAFETY: single-threaded here; both children continue with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(ready_read);
            nix::unistd::setsid().expect("setsid");
            // SAFETY: as above.
            if let ForkResult::Parent { .. } = unsafe { fork() }.expect("fork") {
                // SAFETY: leaving at once, without running anything of the parent's.
                unsafe { libc::_exit(0) };
            }
            // SAFETY: SIG_IGN installs no handler code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            // SAFETY: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            say(&format!("marker {} uid {uid}", getpid()));
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .expect("/dev/null");
            for fd in 0..=2 {
                // SAFETY: dup2 onto the standard descriptors, which we own.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
            drop(null);
            drop(ready_write);
            loop {
                nix::unistd::pause();
            }
        }
        ForkResult::Parent { child } => {
            drop(ready_write);
            let _ = nix::sys::wait::waitpid(child, None);
            // Ready once the marker has closed its end.
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(ready_read), &mut sink);
            wait_for_eof();
            code
        }
    }
}

/// The "no room" fixture: a user namespace (mapped by us, root outside) in which no further user
/// namespace may be created, and a non-root user, who may create no PID namespace and no cgroup.
fn no_room(command: &[String]) -> i32 {
    let (mapped_read, mapped_write) = pipe();
    let (unshared_read, unshared_write) = pipe();
    // SAFETY: single-threaded here; the child continues with ordinary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(mapped_write);
            drop(unshared_read);
            // SAFETY: plain syscall.
            let unshared = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
            assert_eq!(unshared, 0, "unshare(CLONE_NEWUSER)");
            drop(unshared_write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(mapped_read), &mut sink);
            std::fs::write("/proc/sys/user/max_user_namespaces", "0").expect("sysctl");
            // SAFETY: plain syscalls; groups first, while still root.
            unsafe {
                assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
                assert_eq!(libc::setresgid(65534, 65534, 65534), 0, "setresgid");
                assert_eq!(libc::setresuid(65534, 65534, 65534), 0, "setresuid");
            }
            let error = std::os::unix::process::CommandExt::exec(
                std::process::Command::new(&command[0]).args(&command[1..]),
            );
            panic!("exec {}: {error}", command[0]);
        }
        ForkResult::Parent { child } => {
            drop(mapped_read);
            drop(unshared_write);
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(unshared_read), &mut sink);
            for map in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{child}/{map}"), "0 0 65536\n").expect(map);
            }
            drop(mapped_write);
            match nix::sys::wait::waitpid(child, None).expect("wait") {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                nix::sys::wait::WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                other => panic!("{other:?}"),
            }
        }
    }
}

fn no_syscall(nr: i32, errno: i32, command: &[String]) -> i32 {
    // struct sock_filter: code, jt, jf, k. Load the call's number; if it is `nr`, fail with
    // `errno`; allow everything else.
    #[repr(C)]
    struct Insn(u16, u8, u8, u32);
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        Insn(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        Insn(JEQ_K, 0, 1, nr as u32),
        Insn(RET_K, 0, 0, RET_ERRNO | (errno as u32 & 0xffff)),
        Insn(RET_K, 0, 0, RET_ALLOW),
    ];
    #[repr(C)]
    struct Program(u16, *const Insn);
    let program = Program(filter.len() as u16, filter.as_ptr());
    // SAFETY: `program` points at `filter`, both alive across the calls.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let installed = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const Program,
        );
        assert_eq!(installed, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
    let error = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(&command[0]).args(&command[1..]),
    );
    panic!("exec {}: {error}", command[0]);
}
