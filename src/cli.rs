//! The command line and the environment: what the user asked for, or why that cannot be done.
//!
//! Options come before the command, as with tini, but parsing stops at the first argument that is
//! not an option (or after `--`): everything from the command on belongs to the command.
//!
//! Nothing of argv is copied: options are read in place, and the command stays where the C
//! runtime put it, to be handed to execve as it is. Under a tight address-space limit a long
//! command line may be most of what ferrinit is allowed, so a copy could cost the child its start.

use std::ffi::{CStr, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::contain::Level as ContainLevel;
use crate::exit_status::ExitRemap;
use crate::log;
use crate::signals::Sig;

/// The C runtime's `argv`, borrowed in place for the whole process.
#[derive(Clone, Copy)]
pub struct Argv {
    ptr: *mut *const libc::c_char,
    argc: usize,
}

impl Argv {
    /// # Safety
    /// `argv` must hold `argc` valid C strings followed by a null pointer, as the C runtime
    /// passes them to `main`, and stay unchanged for the rest of the process (a forked child may
    /// change its own copy).
    pub unsafe fn from_c(argc: libc::c_int, argv: *const *const libc::c_char) -> Argv {
        Argv {
            ptr: argv.cast_mut(),
            argc: usize::try_from(argc).unwrap_or(0),
        }
    }

    /// Whether `-p`/`--pdeathsig` may be among the options, before they are parsed: for the
    /// parent's pid, which must be read first thing (lib.rs). An over-approximation, never a
    /// miss: any argument before `--` that starts with `-` and holds a `p` (`-sp`, `--pdeathsig`,
    /// but also `--exit-report`, or a command's `-p`).
    pub fn may_ask_for_parent_death_signal(self) -> bool {
        (1..self.argc)
            .map(|i| self.arg(i).to_bytes())
            .take_while(|arg| *arg != b"--")
            .any(|arg| arg.first() == Some(&b'-') && arg.contains(&b'p'))
    }

    /// `argv[i]`, for `i < argc`.
    fn arg(self, i: usize) -> &'static CStr {
        debug_assert!(i < self.argc);
        // SAFETY: `from_c`'s contract: `argv[i]` for `i < argc` is a valid C string that lives as
        // long as the process.
        unsafe { CStr::from_ptr(*self.ptr.add(i)) }
    }
}

/// The command to run: `argv[start..]`, at least one argument, still in place. `argv[argc]` is
/// null, so [`Command::argv`] is already the array execve takes; and `argv[start - 1]` exists
/// (`start` is at least 1), which lets a forked child turn the array into `/bin/sh FILE ARG...`
/// without allocating.
#[derive(Clone, Copy)]
pub struct Command {
    argv: Argv,
    start: usize,
}

impl Command {
    pub fn program(&self) -> &'static CStr {
        self.argv.arg(self.start)
    }

    /// The arguments, program first.
    pub fn args(&self) -> impl Iterator<Item = &'static CStr> + use<> {
        let argv = self.argv;
        (self.start..argv.argc).map(move |i| argv.arg(i))
    }

    /// `&argv[start]`: the null-terminated argument vector, preceded by one more slot of argv.
    pub fn argv(&self) -> *mut *const libc::c_char {
        // SAFETY: start <= argc, within the array (whose last entry is the null pointer).
        unsafe { self.argv.ptr.add(self.start) }
    }

    /// The program's name for messages.
    pub fn name(&self) -> String {
        self.program().to_string_lossy().into_owned()
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.args()).finish()
    }
}

impl PartialEq for Command {
    fn eq(&self, other: &Command) -> bool {
        self.args().eq(other.args())
    }
}

impl Eq for Command {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run this command as the main child.
    Run(Command),
    /// No child: sleep as a pod's PID 1 and reap whatever is re-parented to us.
    Pause,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub subreaper: bool,
    pub process_group: bool,
    pub pdeathsig: Option<Sig>,
    pub remap_exit: ExitRemap,
    pub verbosity: u8,
    pub warn_on_reap: bool,
    pub grace_period: Option<Duration>,
    pub drain_signal: Sig,
    /// `(received, forwarded)`; `None` drops the signal.
    pub rewrites: Vec<(Sig, Option<Sig>)>,
    pub delays: Vec<(Sig, Duration)>,
    /// `--contain[=LEVEL]`: keep everything the command starts inside, and stop it at the end.
    pub contain: Option<ContainLevel>,
    /// `--exit-report PATH`: where to write how the run ended, as JSON.
    pub exit_report: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Run(Config),
    /// Print this to stdout and exit 0 (help, version, licence).
    Print(String),
}

/// The name ferrinit was run as, which only `--version` heeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Invocation {
    #[default]
    Ferrinit,
    /// As Docker's `docker-init`: dockerd runs `docker-init --version` for `docker info`.
    DockerInit,
}

impl Invocation {
    /// From `argv[0]`: its last path component decides.
    pub fn from_program(argv0: &[u8]) -> Invocation {
        match argv0.rsplit(|&b| b == b'/').next() {
            Some(b"docker-init") => Invocation::DockerInit,
            _ => Invocation::Ferrinit,
        }
    }
}

/// `--version`'s line. As `docker-init` it takes the form of tini's, "tini version X - git.Y",
/// which dockerd parses for `docker info` and `docker version` (moby, daemon/info_unix.go,
/// `parseInitVersion`): X shows as the init's version and Y as its commit, here "ferrinit".
pub fn version(invocation: Invocation) -> String {
    let number = env!("CARGO_PKG_VERSION");
    match invocation {
        Invocation::Ferrinit => format!("ferrinit {number}\n"),
        Invocation::DockerInit => format!("tini version {number} - git.ferrinit\n"),
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("no command to run (usage: ferrinit [OPTIONS] [--] COMMAND [ARG]...)")]
    MissingCommand,
    #[error("--pause runs no command, but '{0}' was given")]
    PauseWithCommand(String),
    #[error("unknown option '{0}'")]
    UnknownOption(String),
    #[error("option '{0}' needs a value")]
    MissingValue(String),
    #[error("option '{option}' takes no value, but '{value}' was given")]
    UnexpectedValue { option: String, value: String },
    #[error("invalid value '{value}' for {option}: {reason}")]
    BadValue {
        option: String,
        value: String,
        reason: String,
    },
    #[error("invalid {name}='{value}' in the environment: {reason}")]
    BadEnv {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Every option, by what it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opt {
    Help,
    Version,
    License,
    Subreaper,
    ProcessGroup,
    WarnOnReap,
    Verbose,
    Pause,
    Pdeathsig,
    RemapExit,
    GracePeriod,
    DrainSignal,
    Rewrite,
    Delay,
    Contain,
    ExitReport,
}

impl Opt {
    fn short(c: u8) -> Option<Opt> {
        Some(match c {
            b'h' => Opt::Help,
            b'V' => Opt::Version,
            b'l' => Opt::License,
            b's' => Opt::Subreaper,
            b'g' => Opt::ProcessGroup,
            b'w' => Opt::WarnOnReap,
            b'v' => Opt::Verbose,
            b'P' => Opt::Pause,
            b'p' => Opt::Pdeathsig,
            b'e' => Opt::RemapExit,
            b't' => Opt::GracePeriod,
            b'r' => Opt::Rewrite,
            _ => return None,
        })
    }

    fn long(name: &[u8]) -> Option<Opt> {
        Some(match name {
            b"help" => Opt::Help,
            b"version" => Opt::Version,
            b"license" => Opt::License,
            b"subreaper" => Opt::Subreaper,
            b"process-group" => Opt::ProcessGroup,
            b"warn-on-reap" => Opt::WarnOnReap,
            b"verbose" => Opt::Verbose,
            b"pause" => Opt::Pause,
            b"pdeathsig" => Opt::Pdeathsig,
            b"remap-exit" => Opt::RemapExit,
            b"grace-period" => Opt::GracePeriod,
            b"drain-signal" => Opt::DrainSignal,
            b"rewrite" => Opt::Rewrite,
            b"delay" => Opt::Delay,
            b"contain" => Opt::Contain,
            b"exit-report" => Opt::ExitReport,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        matches!(
            self,
            Opt::Pdeathsig
                | Opt::RemapExit
                | Opt::GracePeriod
                | Opt::DrainSignal
                | Opt::Rewrite
                | Opt::Delay
                | Opt::ExitReport
        )
    }

    /// `--contain` or `--contain=LEVEL`: a value only when attached.
    fn takes_attached_value(self) -> bool {
        self == Opt::Contain
    }
}

/// Reads the options of `argv` in place, up to the command.
pub fn parse(argv: Argv, env: impl Fn(&str) -> Option<OsString>) -> Result<Action, UsageError> {
    let mut flags = Flags {
        invocation: match argv.argc {
            0 => Invocation::Ferrinit,
            _ => Invocation::from_program(argv.arg(0).to_bytes()),
        },
        ..Flags::default()
    };
    let mut next = 1;
    let mut command = None;
    while next < argv.argc {
        let arg = argv.arg(next).to_bytes();
        next += 1;
        if arg == b"--" {
            command = (next < argv.argc).then_some(next);
            break;
        }
        if let Some(long) = arg.strip_prefix(b"--") {
            let (name, attached) = match long.iter().position(|&b| b == b'=') {
                Some(equals) => (&long[..equals], Some(&long[equals + 1..])),
                None => (long, None),
            };
            // `--=x` names no option at all: shown as given.
            let option = match name {
                b"" => String::from_utf8_lossy(arg).into_owned(),
                _ => format!("--{}", String::from_utf8_lossy(name)),
            };
            let opt = Opt::long(name).ok_or_else(|| UsageError::UnknownOption(option.clone()))?;
            let value = match (opt.takes_value(), attached) {
                (false, Some(value)) if opt.takes_attached_value() => Some(value),
                (false, Some(value)) => {
                    return Err(UsageError::UnexpectedValue {
                        option,
                        value: String::from_utf8_lossy(value).into_owned(),
                    });
                }
                (false, None) => None,
                (true, Some(value)) => Some(value),
                (true, None) => Some(take_value(argv, &mut next, &option)?),
            };
            flags.apply(opt, &option, value)?;
        } else if arg.len() > 1 && arg[0] == b'-' {
            // A cluster of short options (`-sgv`); one that takes a value takes the rest of the
            // cluster (`-e143`, `-e=143`) or else the next argument.
            let mut at = 1;
            while at < arg.len() {
                let Some(opt) = Opt::short(arg[at]) else {
                    let rest = String::from_utf8_lossy(&arg[at..]);
                    let c = rest.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                    return Err(UsageError::UnknownOption(format!("-{c}")));
                };
                let option = format!("-{}", char::from(arg[at]));
                at += 1;
                if !opt.takes_value() {
                    flags.apply(opt, &option, None)?;
                    continue;
                }
                let value = match &arg[at..] {
                    [] => take_value(argv, &mut next, &option)?,
                    [b'=', rest @ ..] | rest => rest,
                };
                flags.apply(opt, &option, Some(value))?;
                break;
            }
        } else {
            command = Some(next - 1);
            break;
        }
    }
    if let Some(text) = flags.print.take() {
        return Ok(Action::Print(text));
    }
    let command = command.map(|start| Command { argv, start });
    flags.into_run(command, &env)
}

/// The argument after an option that needs a value, whatever it looks like (`-e -1`).
fn take_value(argv: Argv, next: &mut usize, option: &str) -> Result<&'static [u8], UsageError> {
    if *next >= argv.argc {
        return Err(UsageError::MissingValue(option.to_owned()));
    }
    *next += 1;
    Ok(argv.arg(*next - 1).to_bytes())
}

#[derive(Default)]
struct Flags {
    /// The name ferrinit was run as, for `--version`.
    invocation: Invocation,
    /// The first of -h, -V, -l: printed once every option has been checked.
    print: Option<String>,
    subreaper: bool,
    process_group: bool,
    warn_on_reap: bool,
    verbose: u8,
    pause: bool,
    pdeathsig: Option<Sig>,
    remap_exit: ExitRemap,
    grace_period: Option<Duration>,
    drain_signal: Option<Sig>,
    rewrites: Vec<(Sig, Option<Sig>)>,
    delays: Vec<(Sig, Duration)>,
    contain: Option<ContainLevel>,
    exit_report: Option<PathBuf>,
}

impl Flags {
    fn apply(&mut self, opt: Opt, option: &str, value: Option<&[u8]>) -> Result<(), UsageError> {
        let given = value;
        let value = value.unwrap_or_default();
        match opt {
            Opt::Help => _ = self.print.get_or_insert_with(|| HELP.to_owned()),
            Opt::Version => _ = self.print.get_or_insert_with(|| version(self.invocation)),
            Opt::License => _ = self.print.get_or_insert_with(|| LICENSE.to_owned()),
            Opt::Subreaper => self.subreaper = true,
            Opt::ProcessGroup => self.process_group = true,
            Opt::WarnOnReap => self.warn_on_reap = true,
            Opt::Verbose => self.verbose = self.verbose.saturating_add(1),
            Opt::Pause => self.pause = true,
            Opt::Pdeathsig => self.pdeathsig = Some(checked(option, value, parent_death_signal)?),
            Opt::RemapExit => self.remap_exit.add(checked(option, value, exit_code)?),
            Opt::GracePeriod => self.grace_period = Some(checked(option, value, duration)?),
            Opt::DrainSignal => self.drain_signal = Some(checked(option, value, signal)?),
            Opt::Rewrite => self.rewrites.push(checked(option, value, rewrite)?),
            Opt::Delay => self.delays.push(checked(option, value, delay)?),
            Opt::Contain => {
                self.contain = Some(match given {
                    None => ContainLevel::Auto,
                    Some(level) => checked(option, level, contain_level)?,
                })
            }
            Opt::ExitReport => {
                let path = OsStr::from_bytes(value).to_owned();
                self.exit_report =
                    Some(report_path(path).map_err(|reason| UsageError::BadValue {
                        option: option.to_owned(),
                        value: String::new(),
                        reason,
                    })?);
            }
        }
        Ok(())
    }

    /// The configuration, built where the caller gets it (not moved into an [`Action`]
    /// afterwards: a move copies it whole, at every start).
    fn into_run(
        self,
        command: Option<Command>,
        env: &impl Fn(&str) -> Option<OsString>,
    ) -> Result<Action, UsageError> {
        let mode = match (self.pause, command) {
            (true, Some(command)) => {
                return Err(UsageError::PauseWithCommand(command.name()));
            }
            (true, None) => Mode::Pause,
            (false, None) => return Err(UsageError::MissingCommand),
            (false, Some(command)) => Mode::Run(command),
        };
        let verbosity = match env_value(env, "FERRINIT_VERBOSITY", verbosity)? {
            Some(v) => v,
            None => env("TINI_VERBOSITY").map_or(log::DEFAULT_VERBOSITY, |v| tini_verbosity(&v)),
        };
        let verbosity = verbosity
            .saturating_add(self.verbose)
            .min(log::MAX_VERBOSITY);
        let grace_period = match self.grace_period {
            Some(grace) => Some(grace),
            None => env_value(env, "FERRINIT_GRACE_PERIOD", duration)?,
        };
        let exit_report = match self.exit_report {
            Some(path) => Some(path),
            None => match env("FERRINIT_EXIT_REPORT") {
                Some(value) => Some(report_path(value).map_err(|reason| UsageError::BadEnv {
                    name: "FERRINIT_EXIT_REPORT",
                    value: String::new(),
                    reason,
                })?),
                None => None,
            },
        };
        Ok(Action::Run(Config {
            mode,
            subreaper: self.subreaper || env_switch(env, "FERRINIT_SUBREAPER", "TINI_SUBREAPER")?,
            process_group: self.process_group
                || env_switch(
                    env,
                    "FERRINIT_KILL_PROCESS_GROUP",
                    "TINI_KILL_PROCESS_GROUP",
                )?,
            pdeathsig: self.pdeathsig,
            remap_exit: self.remap_exit,
            verbosity,
            warn_on_reap: self.warn_on_reap,
            grace_period,
            drain_signal: self.drain_signal.unwrap_or(Sig::TERM),
            rewrites: self.rewrites,
            delays: self.delays,
            contain: match self.contain {
                Some(level) => Some(level),
                None => env_value(env, "FERRINIT_CONTAIN", contain_level)?,
            },
            exit_report,
        }))
    }
}

fn lossy(text: &OsStr) -> String {
    text.to_string_lossy().into_owned()
}

/// An option's value, as `parse` understands it.
fn checked<T>(
    option: &str,
    value: &[u8],
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, UsageError> {
    let bad = |reason: String| UsageError::BadValue {
        option: option.to_owned(),
        value: String::from_utf8_lossy(value).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(value).map_err(|_| bad("not valid UTF-8".into()))?;
    parse(text).map_err(bad)
}

/// TINI_VERBOSITY as tini reads it: `atoi`, stored in an unsigned int. So any value is
/// accepted: leading blanks and a sign are skipped over, digits read, the rest ignored; no digit
/// is 0; and a negative number wraps to a huge one, the most verbose.
fn tini_verbosity(value: &OsStr) -> u8 {
    let level = atoi(value.as_bytes()) as u32;
    u8::try_from(level).unwrap_or(u8::MAX)
}

/// glibc's `atoi`: `(int) strtol(text, NULL, 10)`, saturating at the range of a long, then
/// truncated to an int.
fn atoi(text: &[u8]) -> i32 {
    let text = match text.iter().position(|b| !b" \t\n\x0b\x0c\r".contains(b)) {
        Some(first) => &text[first..],
        None => return 0,
    };
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    let mut magnitude: i128 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        // i64::MAX has 19 digits: past that the value is saturated anyway.
        magnitude = (magnitude * 10 + i128::from(b - b'0')).min(i128::from(i64::MAX) + 1);
    }
    let long = if negative { -magnitude } else { magnitude };
    let long = long.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    long as i32
}

/// A FERRINIT_* value overrides its TINI_* twin. tini enables a switch whenever its variable is
/// set, whatever the value, and so does ferrinit for TINI_*; FERRINIT_* also understands an
/// explicit "off".
fn env_switch(
    env: &impl Fn(&str) -> Option<OsString>,
    ours: &'static str,
    tinis: &'static str,
) -> Result<bool, UsageError> {
    match env_value(env, ours, switch)? {
        Some(on) => Ok(on),
        None => Ok(env(tinis).is_some()),
    }
}

fn env_value<T>(
    env: &impl Fn(&str) -> Option<OsString>,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    let Some(value) = env(name) else {
        return Ok(None);
    };
    let bad = |reason: String| UsageError::BadEnv {
        name,
        value: lossy(&value),
        reason,
    };
    let text = value
        .to_str()
        .ok_or_else(|| bad("not valid UTF-8".into()))?;
    parse(text).map(Some).map_err(bad)
}

/// Any path but an empty one (which names no file).
fn report_path(value: OsString) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("expected a file path".into());
    }
    Ok(PathBuf::from(value))
}

fn switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1/true/yes/on or 0/false/no/off".into()),
    }
}

fn verbosity(text: &str) -> Result<u8, String> {
    digits(text)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| "expected a verbosity level from 0 to 3".into())
}

fn exit_code(text: &str) -> Result<u8, String> {
    digits(text)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| "expected an exit code from 0 to 255".into())
}

/// Plain decimal digits only: no sign, no spaces, no overflow.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn signal(text: &str) -> Result<Sig, String> {
    text.parse::<Sig>().map_err(|e| e.to_string())
}

/// A signal ferrinit can actually receive and forward.
fn forwardable(text: &str) -> Result<Sig, String> {
    let sig = signal(text)?;
    if sig == Sig::CHLD {
        return Err("SIGCHLD is used for reaping and never forwarded".into());
    }
    if !sig.is_collected() {
        return Err(format!("ferrinit never receives {sig}"));
    }
    Ok(sig)
}

/// A signal ferrinit can receive and forward, or SIGKILL (which takes ferrinit, and as PID 1
/// its whole namespace, down with the parent).
fn parent_death_signal(text: &str) -> Result<Sig, String> {
    let sig = signal(text)?;
    if sig == Sig::KILL || sig.is_collected() && sig != Sig::CHLD {
        return Ok(sig);
    }
    Err(format!(
        "{sig} would not reach the child: use a signal ferrinit forwards, or KILL"
    ))
}

fn contain_level(text: &str) -> Result<ContainLevel, String> {
    text.parse()
}

fn rewrite(text: &str) -> Result<(Sig, Option<Sig>), String> {
    let (from, to) = text
        .split_once(':')
        .ok_or("expected FROM:TO, such as TERM:QUIT or 15:3")?;
    let to = if to == "0" { None } else { Some(signal(to)?) };
    Ok((forwardable(from)?, to))
}

fn delay(text: &str) -> Result<(Sig, Duration), String> {
    let (sig, wait) = text
        .split_once(':')
        .ok_or("expected SIGNAL:DURATION, such as TERM:15s")?;
    Ok((forwardable(sig)?, duration(wait)?))
}

/// `500ms`, `10s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 500ms, 10s, 1.5s, 2m or 1h, got '{text}'");
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole_ok = !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit());
    if !whole_ok || !fraction.bytes().all(|b| b.is_ascii_digit()) || number.ends_with('.') {
        return Err(bad());
    }
    let whole_ms = whole
        .parse::<u64>()
        .ok()
        .and_then(|w| w.checked_mul(unit_ms))
        .ok_or_else(|| format!("duration '{text}' is too long"))?;
    // Fractions finer than a millisecond are dropped: no wait is that precise anyway.
    let fraction_ms = fraction
        .bytes()
        .take(12)
        .zip(1..)
        .fold(0u64, |acc, (digit, place)| {
            acc + u64::from(digit - b'0') * unit_ms / 10u64.pow(place)
        });
    whole_ms
        .checked_add(fraction_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration '{text}' is too long"))
}

const LICENSE: &str = include_str!("../LICENSE");

const HELP: &str = "\
ferrinit: a tiny init for containers and PID namespaces.
Runs COMMAND as its child, forwards every signal to it, reaps every zombie,
and exits with the child's exit code (128+N if signal N killed it).

Usage: ferrinit [OPTIONS] [--] COMMAND [ARG]...
       ferrinit --pause [OPTIONS]

Options (before COMMAND; everything from COMMAND on is passed to it):
  -s, --subreaper            Reap orphans even when not PID 1 (child subreaper)
  -p, --pdeathsig SIG        Have the kernel send SIG to ferrinit when its parent
                             dies; ferrinit handles it like any received signal
  -g, --process-group        Forward signals to the child's process group
  -e, --remap-exit CODE      Exit 0 when the child's code is CODE (repeatable)
  -t, --grace-period TIME    When the child exits, TERM everything left, wait up
                             to TIME for it to exit, then KILL what remains;
                             outside PID 1 this makes ferrinit a subreaper (-s)
      --drain-signal SIG     Signal for that drain instead of SIGTERM
  -r, --rewrite FROM:TO      Forward FROM as TO; TO=0 drops it (repeatable)
      --delay SIG:TIME       Hold SIG for TIME before forwarding it; a second
                             SIG during the wait goes through at once
      --contain[=LEVEL]      Keep everything COMMAND starts inside, stop it all
                             when COMMAND exits; LEVEL: auto (default), pidns,
                             cgroup or subreaper (see README, Containment)
  -P, --pause                Run no command: reap, sleep, exit 0 on TERM/INT/HUP
      --exit-report PATH     At exit, write how the run ended to PATH as JSON:
                             code, signal, core_dumped, oom_killed, forwarded,
                             drained, killed, run_time_ms
  -w, --warn-on-reap         Warn whenever a process other than the child is reaped
  -v, --verbose              More logging on stderr (repeatable)
  -h, --help                 Print this help
  -V, --version              Print the version
  -l, --license              Print the licence

SIG: a name or number (TERM, SIGTERM, 15, RTMIN+3). TIME: 500ms, 10s, 2m, 1h
(a bare number is seconds).

Environment:
  FERRINIT_SUBREAPER, TINI_SUBREAPER                  like -s
  FERRINIT_KILL_PROCESS_GROUP, TINI_KILL_PROCESS_GROUP like -g
  FERRINIT_VERBOSITY, TINI_VERBOSITY    0 errors, 1 warnings (default), 2, 3
  FERRINIT_GRACE_PERIOD                 like -t
  FERRINIT_CONTAIN                      like --contain=LEVEL
  FERRINIT_EXIT_REPORT                  like --exit-report
A TINI_* switch is on whenever it is set; a FERRINIT_* one takes 1/0,
true/false, yes/no, on/off, and overrides its TINI_* twin.

Exit codes: the child's; 2 usage error; 125 ferrinit failed (or cannot
open the --exit-report file); 126 COMMAND cannot be executed; 127 COMMAND
not found.
";

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-style argv (program name first, null at the end), leaked as the C runtime's lives.
    /// A C string holds no NUL, so any is dropped.
    fn argv_of(args: impl IntoIterator<Item = Vec<u8>>) -> Argv {
        let mut pointers: Vec<*const libc::c_char> = std::iter::once(b"ferrinit".to_vec())
            .chain(args)
            .map(|mut arg| {
                arg.retain(|&b| b != 0);
                std::ffi::CString::new(arg).unwrap().into_raw().cast_const()
            })
            .collect();
        let argc = pointers.len() as libc::c_int;
        pointers.push(std::ptr::null());
        // SAFETY: argc strings, each valid and leaked, then null; nothing changes them.
        unsafe { Argv::from_c(argc, pointers.leak().as_ptr()) }
    }

    fn os(args: &[&str]) -> Argv {
        argv_of(args.iter().map(|a| a.as_bytes().to_vec()))
    }

    fn args_of(mode: &Mode) -> Vec<Vec<u8>> {
        let Mode::Run(command) = mode else {
            panic!("{mode:?}")
        };
        command.args().map(|a| a.to_bytes().to_vec()).collect()
    }

    fn bytes(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn every_way_of_giving_pdeathsig_is_seen_before_parsing() {
        for args in [
            &["-p", "KILL", "x"][..],
            &["-pKILL", "x"],
            &["-spKILL", "x"],
            &["-s", "-p", "9", "--", "x"],
            &["--pdeathsig", "TERM", "x"],
            &["--pdeathsig=TERM", "x"],
            &["-v", "--pdeathsig=TERM", "--", "x", "--"],
        ] {
            assert!(config(args).pdeathsig.is_some(), "{args:?}");
            assert!(os(args).may_ask_for_parent_death_signal(), "{args:?}");
        }
        for args in [&["--", "x", "-p"][..], &["-s", "-g", "x"], &[]] {
            assert!(!os(args).may_ask_for_parent_death_signal(), "{args:?}");
        }
    }

    fn config(args: &[&str]) -> Config {
        match parse(os(args), no_env) {
            Ok(Action::Run(config)) => config,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn error(args: &[&str]) -> UsageError {
        match parse(os(args), no_env) {
            Err(e) => e,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn with_env(vars: &[(&str, &str)], args: &[&str]) -> Result<Action, UsageError> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse(os(args), move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn options_before_the_command_and_everything_after_it_to_the_command() {
        let c = config(&["-s", "-g", "ls", "-l", "-s", "--", "x"]);
        assert!(c.subreaper && c.process_group);
        assert_eq!(args_of(&c.mode), bytes(&["ls", "-l", "-s", "--", "x"]));
    }

    #[test]
    fn double_dash_ends_options_even_before_a_dash_command() {
        let c = config(&["-v", "--", "-weird", "--help"]);
        assert_eq!(args_of(&c.mode), bytes(&["-weird", "--help"]));
        assert_eq!(c.verbosity, 2);
    }

    #[test]
    fn short_options_combine_and_take_attached_values() {
        let c = config(&["-sgwe143", "-e", "3", "--remap-exit=4", "true"]);
        assert!(c.subreaper && c.process_group && c.warn_on_reap);
        let remapped: Vec<u8> = (0..=255).filter(|&n| c.remap_exit.contains(n)).collect();
        assert_eq!(remapped, [3, 4, 143]);
    }

    #[test]
    fn help_version_and_license_are_printed() {
        for flag in ["-h", "--help"] {
            let Ok(Action::Print(text)) = parse(os(&[flag]), no_env) else {
                panic!()
            };
            assert!(text.contains("Usage: ferrinit"));
        }
        assert_eq!(
            parse(os(&["--version"]), no_env),
            parse(os(&["-V", "ignored"]), no_env)
        );
        let Ok(Action::Print(text)) = parse(os(&["-l"]), no_env) else {
            panic!()
        };
        assert!(text.contains("MIT License"));
    }

    #[test]
    fn the_version_line_depends_on_the_name_run_as() {
        for argv0 in [
            "ferrinit",
            "/usr/bin/ferrinit",
            "docker-init-not",
            "",
            "docker-init/x",
        ] {
            assert_eq!(
                Invocation::from_program(argv0.as_bytes()),
                Invocation::Ferrinit
            );
        }
        for argv0 in ["docker-init", "/sbin/docker-init", "./docker-init"] {
            assert_eq!(
                Invocation::from_program(argv0.as_bytes()),
                Invocation::DockerInit
            );
        }
        let number = env!("CARGO_PKG_VERSION");
        assert_eq!(
            version(Invocation::Ferrinit),
            format!("ferrinit {number}\n")
        );
        assert!(version(Invocation::DockerInit).starts_with(&format!("tini version {number} - ")));
    }

    #[test]
    fn contain_takes_an_optional_level_and_its_variable() {
        assert_eq!(config(&["true"]).contain, None);
        assert_eq!(
            config(&["--contain", "true"]).contain,
            Some(ContainLevel::Auto)
        );
        assert_eq!(
            config(&["--contain=cgroup", "true"]).contain,
            Some(ContainLevel::Cgroup)
        );
        assert_eq!(
            args_of(&config(&["--contain", "pidns"]).mode),
            bytes(&["pidns"]),
            "a level is only ever attached: a separate word is the command"
        );
        let from_env = with_env(&[("FERRINIT_CONTAIN", "subreaper")], &["true"]);
        assert!(
            matches!(from_env, Ok(Action::Run(c)) if c.contain == Some(ContainLevel::Subreaper))
        );
        let flag_wins = with_env(
            &[("FERRINIT_CONTAIN", "subreaper")],
            &["--contain=pidns", "true"],
        );
        assert!(matches!(flag_wins, Ok(Action::Run(c)) if c.contain == Some(ContainLevel::Pidns)));
        assert!(matches!(
            error(&["--contain=all", "true"]),
            UsageError::BadValue { .. }
        ));
        assert!(matches!(
            with_env(&[("FERRINIT_CONTAIN", "")], &["true"]),
            Err(UsageError::BadEnv { .. })
        ));
    }

    #[test]
    fn usage_errors_name_the_bad_input() {
        assert_eq!(error(&[]), UsageError::MissingCommand);
        assert_eq!(error(&["--"]), UsageError::MissingCommand);
        assert_eq!(error(&["-x", "ls"]), UsageError::UnknownOption("-x".into()));
        assert_eq!(
            error(&["--nope", "ls"]),
            UsageError::UnknownOption("--nope".into())
        );
        assert_eq!(error(&["-e"]), UsageError::MissingValue("-e".into()));
        assert_eq!(
            error(&["--subreaper=yes", "ls"]),
            UsageError::UnexpectedValue {
                option: "--subreaper".into(),
                value: "yes".into()
            }
        );
        for (args, value) in [
            (&["-e", "256", "ls"][..], "256"),
            (&["-e", "-1", "ls"], "-1"),
            (&["-e", "+1", "ls"], "+1"),
            (&["-e", "", "ls"], ""),
            (&["-p", "NOPE", "ls"], "NOPE"),
            (&["-p", "STOP", "ls"], "STOP"),
            (&["-p", "CHLD", "ls"], "CHLD"),
            (&["-p", "19", "ls"], "19"),
            (&["-t", "soon", "ls"], "soon"),
            (&["-r", "TERM", "ls"], "TERM"),
            (&["-r", "KILL:TERM", "ls"], "KILL:TERM"),
            (&["-r", "CHLD:TERM", "ls"], "CHLD:TERM"),
            (&["--delay", "TERM:forever", "ls"], "TERM:forever"),
        ] {
            match error(args) {
                UsageError::BadValue { value: v, .. } => assert_eq!(v, value),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn any_number_of_v_flags_is_the_top_verbosity() {
        let many: Vec<&str> = std::iter::repeat_n("-v", 300).chain(["x"]).collect();
        assert_eq!(config(&many).verbosity, 3);
        assert_eq!(config(&["-p", "KILL", "x"]).pdeathsig, Some(Sig::KILL));
        assert_eq!(
            config(&["-p", "rtmin+3", "x"]).pdeathsig,
            "RTMIN+3".parse().ok()
        );
    }

    #[test]
    fn pause_mode_takes_no_command() {
        assert_eq!(config(&["--pause"]).mode, Mode::Pause);
        assert_eq!(config(&["-P", "-t", "3s"]).mode, Mode::Pause);
        assert_eq!(
            error(&["-P", "sleep", "1"]),
            UsageError::PauseWithCommand("sleep".into())
        );
    }

    #[test]
    fn rewrites_accept_names_numbers_and_zero_to_drop() {
        let c = config(&[
            "-r",
            "TERM:QUIT",
            "--rewrite",
            "10:0",
            "-r",
            "sigrtmin+1:usr2",
            "x",
        ]);
        let rtmin1 = Sig::from_number(libc::SIGRTMIN() + 1).unwrap();
        assert_eq!(
            c.rewrites,
            [
                (Sig::TERM, Some(Sig::from_number(libc::SIGQUIT).unwrap())),
                (Sig::from_number(libc::SIGUSR1).unwrap(), None),
                (rtmin1, Some(Sig::from_number(libc::SIGUSR2).unwrap())),
            ]
        );
    }

    #[test]
    fn durations() {
        let ms = |s: &str| duration(s).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("10s"), Ok(10_000));
        assert_eq!(ms("10"), Ok(10_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("0.25"), Ok(250));
        assert_eq!(ms("1m"), Ok(60_000));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("0"), Ok(0));
        for bad in [
            "",
            "s",
            "-1s",
            "1.s",
            ".5s",
            "1.2.3",
            "5 s",
            "5x",
            "1e3",
            "99999999999999999999s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn environment_follows_tini_and_ferrinit_overrides_it() {
        let run = |vars: &[(&str, &str)]| match with_env(vars, &["x"]) {
            Ok(Action::Run(c)) => c,
            other => panic!("{vars:?} gave {other:?}"),
        };
        assert!(run(&[("TINI_SUBREAPER", "")]).subreaper);
        assert!(
            run(&[("TINI_SUBREAPER", "0")]).subreaper,
            "tini: set means on"
        );
        assert!(!run(&[("TINI_SUBREAPER", "1"), ("FERRINIT_SUBREAPER", "off")]).subreaper);
        assert!(run(&[("FERRINIT_KILL_PROCESS_GROUP", "yes")]).process_group);
        assert!(run(&[("TINI_KILL_PROCESS_GROUP", "1")]).process_group);
        assert_eq!(run(&[("TINI_VERBOSITY", "3")]).verbosity, 3);
        assert_eq!(run(&[("TINI_VERBOSITY", "0")]).verbosity, 0);
        assert_eq!(
            run(&[("TINI_VERBOSITY", "0"), ("FERRINIT_VERBOSITY", "2")]).verbosity,
            2
        );
        assert_eq!(run(&[("FERRINIT_VERBOSITY", "200")]).verbosity, 3);
        assert_eq!(
            run(&[("FERRINIT_GRACE_PERIOD", "2s")]).grace_period,
            Some(Duration::from_secs(2))
        );
        for (name, value) in [
            ("FERRINIT_VERBOSITY", "abc"),
            ("FERRINIT_VERBOSITY", "-1"),
            ("FERRINIT_SUBREAPER", "maybe"),
            ("FERRINIT_GRACE_PERIOD", ""),
        ] {
            match with_env(&[(name, value)], &["x"]) {
                Err(UsageError::BadEnv {
                    name: n, value: v, ..
                }) => {
                    assert_eq!((n, v.as_str()), (name, value))
                }
                other => panic!("{name}={value} gave {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_environment() {
        let Ok(Action::Run(c)) = with_env(&[("FERRINIT_GRACE_PERIOD", "2s")], &["-t", "1", "x"])
        else {
            panic!()
        };
        assert_eq!(c.grace_period, Some(Duration::from_secs(1)));
    }

    #[test]
    fn non_utf8_command_passes_through_byte_for_byte() {
        let weird = vec![b'a', 0xff, b'b'];
        let argv = argv_of([b"--".to_vec(), weird.clone(), "\u{e9}".as_bytes().to_vec()]);
        let Ok(Action::Run(c)) = parse(argv, no_env) else {
            panic!()
        };
        assert_eq!(args_of(&c.mode)[0], weird);
    }

    #[test]
    fn the_command_is_borrowed_from_argv_in_place() {
        let argv = os(&["-s", "--", "x", "y"]);
        let Ok(Action::Run(c)) = parse(argv, no_env) else {
            panic!()
        };
        let Mode::Run(command) = c.mode else { panic!() };
        // SAFETY: test-only reads of the leaked argv: argv[3] is "x", argv[5] the null.
        unsafe {
            assert_eq!(command.argv(), argv.ptr.add(3));
            assert!((*argv.ptr.add(5)).is_null());
        }
    }

    #[test]
    fn a_print_flag_still_checks_the_other_options() {
        assert_eq!(
            error(&["--version", "--bogus"]),
            UsageError::UnknownOption("--bogus".into())
        );
        assert_eq!(error(&["-h", "-e", "x"]), error(&["-e", "x", "true"]));
        assert!(matches!(
            parse(os(&["-s", "-l", "-v"]), no_env),
            Ok(Action::Print(_))
        ));
    }

    #[test]
    fn tini_verbosity_is_read_with_atoi_as_tini_does() {
        for (text, level) in [
            ("", 0),
            ("abc", 0),
            ("2", 2),
            (" 1", 1),
            ("\t+2xyz", 2),
            ("1.5", 1),
            ("-1", 3),
            ("-0", 0),
            ("99999999999", 3),
            ("4294967296", 0),
            ("-99999999999999999999", 0),
        ] {
            let vars = [("TINI_VERBOSITY", text)];
            let Ok(Action::Run(c)) = with_env(&vars, &["x"]) else {
                panic!("{text:?}")
            };
            assert_eq!(c.verbosity, level, "{text:?}");
        }
        assert_eq!(atoi(b"  -12ab"), -12);
        assert_eq!(atoi(b"4294967297"), 1);
        assert_eq!(atoi(b"99999999999999999999"), -1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Options, near-options, values and raw bytes (not UTF-8 either).
        fn any_arg() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                "-[a-zA-Z]{0,3}[0-9]{0,3}".prop_map(String::into_bytes),
                "--[a-z-]{0,15}(=.{0,8})?".prop_map(String::into_bytes),
                "[A-Za-z0-9:+.-]{0,12}".prop_map(String::into_bytes),
                proptest::collection::vec(1u8.., 0..12),
            ]
        }

        proptest! {
            #[test]
            fn parsing_any_command_line_never_panics(
                args in proptest::collection::vec(any_arg(), 0..8),
                verbosity in proptest::option::of(".{0,4}"),
                grace in proptest::option::of(".{0,6}"),
            ) {
                let env = move |name: &str| match name {
                    "FERRINIT_VERBOSITY" => verbosity.clone().map(OsString::from),
                    "TINI_VERBOSITY" => verbosity.clone().map(OsString::from),
                    "FERRINIT_GRACE_PERIOD" => grace.clone().map(OsString::from),
                    _ => None,
                };
                let _ = parse(argv_of(args), env);
            }

            #[test]
            fn what_the_flags_say_is_what_parses(
                subreaper in any::<bool>(),
                group in any::<bool>(),
                verbose in 0u8..5,
                codes in proptest::collection::btree_set(any::<u8>(), 0..4),
                grace_ms in proptest::option::of(0u64..10_000_000),
                pdeathsig in proptest::option::of(1i32..=64),
                command in proptest::collection::vec("[a-z/-][a-z0-9 /=-]{0,8}", 1..4),
            ) {
                let mut args: Vec<String> = Vec::new();
                if subreaper { args.push("--subreaper".into()); }
                if group { args.push("-g".into()); }
                args.extend((0..verbose).map(|_| "-v".to_string()));
                for code in &codes { args.push(format!("--remap-exit={code}")); }
                if let Some(ms) = grace_ms { args.extend(["-t".into(), format!("{ms}ms")]); }
                let pdeathsig = pdeathsig
                    .and_then(Sig::from_number)
                    .filter(|sig| parent_death_signal(&sig.to_string()).is_ok());
                if let Some(sig) = pdeathsig { args.extend(["-p".into(), sig.to_string()]); }
                args.push("--".into());
                args.extend(command.iter().cloned());
                let parsed = parse(os(&args.iter().map(String::as_str).collect::<Vec<_>>()), no_env);
                let Ok(Action::Run(config)) = parsed else {
                    return Err(TestCaseError::fail(format!("{args:?} gave {parsed:?}")));
                };
                prop_assert_eq!(config.subreaper, subreaper);
                prop_assert_eq!(config.process_group, group);
                prop_assert_eq!(config.verbosity, (1 + verbose).min(3));
                prop_assert!((0..=255).all(|c| config.remap_exit.contains(c) == codes.contains(&c)));
                prop_assert_eq!(config.grace_period, grace_ms.map(Duration::from_millis));
                prop_assert_eq!(config.pdeathsig, pdeathsig);
                prop_assert_eq!(args_of(&config.mode), command.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>());
            }

            #[test]
            fn durations_round_trip_in_milliseconds(ms in any::<u64>()) {
                prop_assert_eq!(duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
            }
        }
    }
}
