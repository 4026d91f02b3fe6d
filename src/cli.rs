//! The command line and the environment: what the user asked for, or why that cannot be done.
//!
//! Options come before the command, as with tini, but parsing stops at the first argument that is
//! not an option (or after `--`): everything from the command on belongs to the command.

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::Arg::{Long, Short, Value};

use crate::exit_status::ExitRemap;
use crate::log;
use crate::signals::Sig;

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run this command (never empty) as the main child.
    Run(Vec<OsString>),
    /// No child: sleep as a pod's PID 1 and reap whatever is re-parented to us.
    Pause,
}

#[derive(Debug, PartialEq, Eq)]
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
    /// `--exit-report PATH`: where to write how the run ended, as JSON.
    pub exit_report: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Run(Config),
    /// Print this to stdout and exit 0 (help, version, licence).
    Print(String),
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

/// Collects `argv` byte for byte, skipping `argv[0]`.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as the C runtime passes to `main`.
pub unsafe fn args_from_c(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    (1..count)
        .map(|i| {
            // SAFETY: the caller guarantees `argv[i]` for `i < argc` is a valid C string.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect()
}

pub fn parse(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Action, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut flags = Flags::default();
    let mut command = Vec::new();
    while let Some(arg) = parser.next().map_err(from_lexopt)? {
        let option = match &arg {
            Short(c) => format!("-{c}"),
            Long(l) => format!("--{l}"),
            Value(_) => String::new(),
        };
        match arg {
            Short('h') | Long("help") => return Ok(Action::Print(HELP.to_owned())),
            Short('V') | Long("version") => {
                return Ok(Action::Print(format!(
                    "ferrinit {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            Short('l') | Long("license") => return Ok(Action::Print(LICENSE.to_owned())),
            Short('s') | Long("subreaper") => flags.subreaper = true,
            Short('g') | Long("process-group") => flags.process_group = true,
            Short('w') | Long("warn-on-reap") => flags.warn_on_reap = true,
            Short('v') | Long("verbose") => flags.verbose = flags.verbose.saturating_add(1),
            Short('P') | Long("pause") => flags.pause = true,
            Short('p') | Long("pdeathsig") => {
                flags.pdeathsig = Some(parse_value(&mut parser, &option, parent_death_signal)?)
            }
            Short('e') | Long("remap-exit") => {
                flags
                    .remap_exit
                    .add(parse_value(&mut parser, &option, exit_code)?)
            }
            Short('t') | Long("grace-period") => {
                flags.grace_period = Some(parse_value(&mut parser, &option, duration)?)
            }
            Long("drain-signal") => {
                flags.drain_signal = Some(parse_value(&mut parser, &option, signal)?)
            }
            Short('r') | Long("rewrite") => {
                flags
                    .rewrites
                    .push(parse_value(&mut parser, &option, rewrite)?)
            }
            Long("delay") => flags.delays.push(parse_value(&mut parser, &option, delay)?),
            Long("exit-report") => {
                let path = parser.value().map_err(from_lexopt)?;
                flags.exit_report =
                    Some(report_path(path).map_err(|reason| UsageError::BadValue {
                        option: option.clone(),
                        value: String::new(),
                        reason,
                    })?);
            }
            Value(program) => {
                command.push(program);
                command.extend(parser.raw_args().map_err(from_lexopt)?);
            }
            Short(_) | Long(_) => return Err(UsageError::UnknownOption(option)),
        }
    }
    flags.into_config(command, &env).map(Action::Run)
}

#[derive(Default)]
struct Flags {
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
    exit_report: Option<PathBuf>,
}

impl Flags {
    fn into_config(
        self,
        command: Vec<OsString>,
        env: &impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, UsageError> {
        let mode = match (self.pause, command.first()) {
            (true, Some(program)) => {
                return Err(UsageError::PauseWithCommand(lossy(program)));
            }
            (true, None) => Mode::Pause,
            (false, None) => return Err(UsageError::MissingCommand),
            (false, Some(_)) => Mode::Run(command),
        };
        let verbosity = match env_value(env, "FERRINIT_VERBOSITY", verbosity)? {
            Some(v) => Some(v),
            None => env_value(env, "TINI_VERBOSITY", verbosity)?,
        };
        let verbosity = verbosity
            .unwrap_or(log::DEFAULT_VERBOSITY)
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
        Ok(Config {
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
            exit_report,
        })
    }
}

fn from_lexopt(error: lexopt::Error) -> UsageError {
    match error {
        lexopt::Error::MissingValue { option } => {
            UsageError::MissingValue(option.unwrap_or_default())
        }
        lexopt::Error::UnexpectedOption(option) => UsageError::UnknownOption(option),
        lexopt::Error::UnexpectedValue { option, value } => UsageError::UnexpectedValue {
            option,
            value: lossy(&value),
        },
        other => UsageError::UnknownOption(other.to_string()),
    }
}

fn lossy(text: &OsString) -> String {
    text.to_string_lossy().into_owned()
}

fn parse_value<T>(
    parser: &mut lexopt::Parser,
    option: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, UsageError> {
    let value = parser.value().map_err(from_lexopt)?;
    let bad = |reason: String| UsageError::BadValue {
        option: option.to_owned(),
        value: lossy(&value),
        reason,
    };
    let text = value
        .to_str()
        .ok_or_else(|| bad("not valid UTF-8".into()))?;
    parse(text).map_err(bad)
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

const LICENSE: &str = include_str!("license.txt");

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
                             to TIME for it to exit, then KILL what remains
      --drain-signal SIG     Signal for that drain instead of SIGTERM
  -r, --rewrite FROM:TO      Forward FROM as TO; TO=0 drops it (repeatable)
      --delay SIG:TIME       Hold SIG for TIME before forwarding it; a second
                             SIG during the wait goes through at once
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
  FERRINIT_EXIT_REPORT                  like --exit-report
A TINI_* switch is on whenever it is set; a FERRINIT_* one takes 1/0,
true/false, yes/no, on/off, and overrides its TINI_* twin.

Exit codes: the child's; 2 usage error; 125 ferrinit failed (or cannot
create the --exit-report file); 126 COMMAND cannot be executed; 127 COMMAND
not found.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
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
        assert_eq!(c.mode, Mode::Run(os(&["ls", "-l", "-s", "--", "x"])));
    }

    #[test]
    fn double_dash_ends_options_even_before_a_dash_command() {
        let c = config(&["-v", "--", "-weird", "--help"]);
        assert_eq!(c.mode, Mode::Run(os(&["-weird", "--help"])));
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
            (&["-p", "SEGV", "ls"], "SEGV"),
            (&["-p", "CHLD", "ls"], "CHLD"),
            (&["-p", "32", "ls"], "32"),
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
            ("TINI_VERBOSITY", "-1"),
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
        use std::os::unix::ffi::OsStrExt;
        let weird = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let args = vec![
            OsString::from("--"),
            weird.clone(),
            OsString::from("\u{e9}"),
        ];
        let Ok(Action::Run(c)) = parse(args, no_env) else {
            panic!()
        };
        let Mode::Run(command) = c.mode else { panic!() };
        assert_eq!(command[0].as_bytes(), weird.as_bytes());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Options, near-options, values and raw bytes (not UTF-8 either).
        fn any_arg() -> impl Strategy<Value = OsString> {
            prop_oneof![
                "-[a-zA-Z]{0,3}[0-9]{0,3}".prop_map(OsString::from),
                "--[a-z-]{0,15}(=.{0,8})?".prop_map(OsString::from),
                "[A-Za-z0-9:+.-]{0,12}".prop_map(OsString::from),
                proptest::collection::vec(1u8.., 0..12).prop_map(OsString::from_vec),
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
                    "FERRINIT_GRACE_PERIOD" => grace.clone().map(OsString::from),
                    _ => None,
                };
                let _ = parse(args, env);
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
                let parsed = parse(args.iter().map(OsString::from).collect(), no_env);
                let Ok(Action::Run(config)) = parsed else {
                    return Err(TestCaseError::fail(format!("{args:?} gave {parsed:?}")));
                };
                prop_assert_eq!(config.subreaper, subreaper);
                prop_assert_eq!(config.process_group, group);
                prop_assert_eq!(config.verbosity, (1 + verbose).min(3));
                prop_assert!((0..=255).all(|c| config.remap_exit.contains(c) == codes.contains(&c)));
                prop_assert_eq!(config.grace_period, grace_ms.map(Duration::from_millis));
                prop_assert_eq!(config.pdeathsig, pdeathsig);
                prop_assert_eq!(config.mode, Mode::Run(command.iter().map(OsString::from).collect()));
            }

            #[test]
            fn durations_round_trip_in_milliseconds(ms in any::<u64>()) {
                prop_assert_eq!(duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
            }
        }
    }
}
