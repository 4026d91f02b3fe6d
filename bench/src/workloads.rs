//! The eight workloads. Every init runs each one as PID 1 of a fresh PID namespace, interleaved
//! (A B C D E A B C D E ...) so that drift on this shared machine hits all alike.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferrinit_testkit::{children_of, zombies_of};

use crate::inits::Init;
use crate::report::{Row, Samples};
use crate::run::{self, Target, as_pid1, cpu_ns, pid1_of, status_number};

/// How much of everything: the full run, or a smoke run that only proves the harness works.
pub struct Sizes {
    pub idle: Duration,
    pub idle_rounds: usize,
    pub startup_runs: usize,
    pub startup_blocks: usize,
    pub instruction_repeats: usize,
    pub orphans: usize,
    pub reap_rounds: usize,
    pub round_trips: usize,
    pub latency_blocks: usize,
    pub storm_signals: usize,
    pub storm_rounds: usize,
    pub tree: usize,
    pub shutdown_rounds: usize,
    /// How long a runtime waits after SIGTERM before SIGKILL (Docker's default is 10 s).
    pub stop_timeout: Duration,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        idle: Duration::from_secs(10),
        idle_rounds: 3,
        startup_runs: 1000,
        startup_blocks: 10,
        instruction_repeats: 3,
        orphans: 100_000,
        reap_rounds: 3,
        round_trips: 10_000,
        latency_blocks: 10,
        storm_signals: 100_000,
        storm_rounds: 5,
        tree: 50,
        shutdown_rounds: 3,
        stop_timeout: Duration::from_secs(10),
    };

    pub const SMOKE: Sizes = Sizes {
        idle: Duration::from_millis(500),
        idle_rounds: 1,
        startup_runs: 10,
        startup_blocks: 2,
        instruction_repeats: 1,
        orphans: 500,
        reap_rounds: 1,
        round_trips: 100,
        latency_blocks: 2,
        storm_signals: 2_000,
        storm_rounds: 1,
        tree: 5,
        shutdown_rounds: 1,
        stop_timeout: Duration::from_millis(500),
    };
}

pub struct Bench {
    pub inits: Vec<Init>,
    pub probe: PathBuf,
    pub sizes: Sizes,
}

/// A workload process: `unshare` with PID 1 inside, stdin and stdout piped.
struct Running {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Running {
    fn start(argv: Vec<OsString>) -> Running {
        let mut child = as_pid1(&argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the workload");
        Running {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        }
    }

    fn expect(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read workload output");
            assert!(n > 0, "workload ended before '{prefix}'");
            if line.starts_with(prefix) {
                return line.trim_end().to_owned();
            }
        }
    }

    /// Host pid of the namespace's PID 1.
    fn pid1(&self) -> i32 {
        pid1_of(self.child.id() as i32)
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(text.as_bytes()).expect("write");
        stdin.flush().expect("flush");
    }

    /// Closes stdin, then waits for the exit; returns the exit code and the rest of stdout.
    fn finish(mut self) -> (i32, String) {
        self.stdin = None;
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().expect("wait");
        (
            std::os::unix::process::ExitStatusExt::into_raw(status) >> 8 & 0xff,
            rest,
        )
    }

    fn kill(mut self) {
        // SAFETY: kill has no memory-safety preconditions; the group is our workload's.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

use std::os::unix::process::CommandExt;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

impl Bench {
    fn names(&self) -> usize {
        self.inits.len()
    }

    fn probe_argv(&self, args: &[&str]) -> Vec<OsString> {
        let mut argv = vec![self.probe.clone().into_os_string()];
        argv.extend(os(args));
        argv
    }

    /// 1. The size of each init's binary, and what kind of binary it is.
    pub fn sizes(&self) -> (Row, Vec<String>) {
        let mut row = Row::new("binary size", "file size", "bytes", self.names());
        let mut kinds = Vec::new();
        for (i, init) in self.inits.iter().enumerate() {
            let Some(path) = &init.path else {
                kinds.push("—".into());
                continue;
            };
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            row.values[i] = Some(Samples(vec![size as f64]));
            let file = std::process::Command::new("file").arg(path).output();
            let description = file
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let kind = if description.contains("dynamically linked") {
                "dynamic (needs libc.so: +1.9 MB on disk)"
            } else if description.contains("static-pie") {
                "static-pie"
            } else {
                "static"
            };
            kinds.push(kind.into());
        }
        (row, kinds)
    }

    /// 2 and 3. Each init idle for a while with a sleeping child: wake-ups, CPU, memory.
    pub fn idle(&self) -> Vec<Row> {
        let n = self.names();
        let secs = self.sizes.idle.as_secs_f64();
        let mut wakeups = Row::new(
            format!("idle: voluntary context switches per {secs:.0} s"),
            "/proc/PID/status",
            "count",
            n,
        );
        let mut cpu = Row::new(
            format!("idle: CPU per {secs:.0} s"),
            "CPU time (schedstat)",
            "µs",
            n,
        );
        let mut rss = Row::new("idle: resident memory", "VmRSS", "kB", n);
        let mut hwm = Row::new("idle: peak resident memory", "VmHWM", "kB", n);
        for _ in 0..self.sizes.idle_rounds {
            // All at once, in the same window.
            let mut running: Vec<(usize, Running, i32)> = Vec::new();
            for (i, init) in self
                .inits
                .iter()
                .enumerate()
                .filter(|(_, init)| !init.is_none())
            {
                let mut workload = Running::start(init.argv(&[], &self.probe_argv(&["wait"])));
                workload.expect("ready");
                let pid = workload.pid1();
                running.push((i, workload, pid));
            }
            let before: Vec<(u64, u64)> = running
                .iter()
                .map(|(_, _, pid)| (status_number(*pid, "voluntary_ctxt_switches"), cpu_ns(*pid)))
                .collect();
            std::thread::sleep(self.sizes.idle);
            for ((i, workload, pid), (switches, ns)) in running.into_iter().zip(before) {
                let switched = status_number(pid, "voluntary_ctxt_switches") - switches;
                wakeups.push(i, switched as f64);
                cpu.push(i, (cpu_ns(pid) - ns) as f64 / 1e3);
                rss.push(i, status_number(pid, "VmRSS") as f64);
                hwm.push(i, status_number(pid, "VmHWM") as f64);
                workload.finish();
            }
        }
        for row in [&mut wakeups, &mut cpu, &mut rss, &mut hwm] {
            row.notes[n - 1] = Some("0 (no init)".into());
        }
        vec![wakeups, cpu, rss, hwm]
    }

    /// 4. `INIT -- /bin/true`, again and again, against `/bin/true` alone.
    pub fn startup(&self) -> Vec<Row> {
        let n = self.names();
        let runs = self.sizes.startup_runs / self.sizes.startup_blocks;
        let mut cpu = Row::new(
            "start-up: CPU per run",
            "wait4 rusage of the whole tree",
            "µs",
            n,
        );
        let mut above = Row::new(
            "start-up: CPU per run above no init",
            "wait4 rusage, difference",
            "µs",
            n,
        );
        let mut faults = Row::new(
            "start-up: page faults per run",
            "wait4 rusage (minor faults)",
            "count",
            n,
        );
        let mut switches = Row::new(
            "start-up: voluntary context switches per run",
            "wait4 rusage of the whole tree",
            "count",
            n,
        );
        let mut wall = Row::new("start-up: wall time per run", "wall clock (noisy)", "µs", n);
        let mut instructions = Row::new(
            "start-up: instructions of the init",
            "callgrind (exact)",
            "count",
            n,
        );
        let true_argv = os(&["/bin/true"]);
        for _ in 0..self.sizes.startup_blocks {
            let mut totals = vec![(Duration::ZERO, 0i64, Duration::ZERO, 0i64); n];
            for _ in 0..runs {
                for (i, init) in self.inits.iter().enumerate() {
                    let started = Instant::now();
                    let usage = run::run_for_usage(as_pid1(&init.argv(&[], &true_argv)));
                    assert_eq!(usage.status, 0, "{} -- /bin/true failed", init.name);
                    totals[i].0 += usage.cpu;
                    totals[i].1 += usage.minor_faults;
                    totals[i].2 += started.elapsed();
                    totals[i].3 += usage.voluntary_switches;
                }
            }
            let per_run = |d: Duration| d.as_secs_f64() * 1e6 / runs as f64;
            let baseline = per_run(totals[n - 1].0);
            for (i, (cpu_total, fault_total, wall_total, switch_total)) in
                totals.into_iter().enumerate()
            {
                cpu.push(i, per_run(cpu_total));
                above.push(i, per_run(cpu_total) - baseline);
                faults.push(i, fault_total as f64 / runs as f64);
                switches.push(i, switch_total as f64 / runs as f64);
                wall.push(i, per_run(wall_total));
            }
        }
        if run::have("valgrind") {
            for _ in 0..self.sizes.instruction_repeats {
                for (i, init) in self.inits.iter().enumerate() {
                    let count = if init.is_none() {
                        Some(0)
                    } else {
                        run::instructions(&init.argv(&[], &true_argv))
                    };
                    if let Some(count) = count {
                        instructions.values[i]
                            .get_or_insert_with(Samples::default)
                            .0
                            .push(count as f64);
                    }
                }
            }
        } else {
            instructions.notes = vec![Some("valgrind missing".into()); n];
        }
        vec![cpu, above, faults, switches, wall, instructions]
    }

    /// 5. A generator makes many orphans that exit at once; the init must reap them all.
    pub fn reaping(&self) -> Vec<Row> {
        let n = self.names();
        let orphans = self.sizes.orphans;
        let mut throughput = Row::new(
            "reaping: orphans reaped per CPU-second of the init",
            "CPU time (schedstat)",
            "orphans/s",
            n,
        )
        .higher_is_better();
        let mut per_orphan = Row::new(
            "reaping: init CPU per orphan",
            "CPU time (schedstat)",
            "ns",
            n,
        );
        let mut wall = Row::new(
            format!("reaping: {orphans} orphans made and reaped"),
            "wall clock",
            "ms",
            n,
        );
        // The probe waits for the go, so that the init's CPU is read before the first fork.
        let script = r#"echo ready; read count; exec "$0" wave "$count""#;
        for _ in 0..self.sizes.reap_rounds {
            for (i, init) in self
                .inits
                .iter()
                .enumerate()
                .filter(|(_, init)| !init.is_none())
            {
                let mut argv = os(&["/bin/sh", "-c", script]);
                argv.push(self.probe.clone().into_os_string());
                let mut workload = Running::start(init.argv(&[], &argv));
                workload.expect("ready");
                let pid = workload.pid1();
                let (cpu_before, started) = (cpu_ns(pid), Instant::now());
                workload.write(&format!("{orphans}\n"));
                workload.expect("wave-done");
                let deadline = Instant::now() + Duration::from_secs(300);
                while children_of(pid).len() > 1 || !zombies_of(pid).is_empty() {
                    assert!(
                        Instant::now() < deadline,
                        "{} never reaped them all",
                        init.name
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                let cpu = (cpu_ns(pid) - cpu_before) as f64;
                throughput.push(i, orphans as f64 / (cpu / 1e9));
                per_orphan.push(i, cpu / orphans as f64);
                wall.push(i, started.elapsed().as_secs_f64() * 1e3);
                workload.finish();
            }
        }
        for row in [&mut throughput, &mut per_orphan, &mut wall] {
            row.notes[n - 1] = Some("n/a: nothing reaps, zombies pile up".into());
        }
        vec![throughput, per_orphan, wall]
    }

    /// 6. SIGUSR1 to the init, a byte back from the child: the forwarding round trip.
    pub fn latency(&self) -> Vec<Row> {
        let n = self.names();
        let mut p50 = Row::new("signal round trip: p50", "wall clock", "µs", n);
        let mut p99 = Row::new("signal round trip: p99", "wall clock", "µs", n);
        let per_block = self.sizes.round_trips / self.sizes.latency_blocks;
        let echo = self.probe_argv(&["echo-signal", &libc::SIGUSR1.to_string()]);
        for _ in 0..self.sizes.latency_blocks {
            for (i, init) in self.inits.iter().enumerate() {
                let mut workload = Running::start(init.argv(&[], &echo));
                workload.expect("ready");
                // No init: straight to the child, which is PID 1 itself (it has a handler).
                let target = Target::new(workload.pid1());
                let mut samples = Vec::with_capacity(per_block);
                let mut byte = [0u8];
                for _ in 0..per_block {
                    let started = Instant::now();
                    assert!(target.send(libc::SIGUSR1));
                    workload.stdout.read_exact(&mut byte).expect("echo");
                    samples.push(started.elapsed().as_secs_f64() * 1e6);
                }
                let block = Samples(samples);
                p50.push(i, block.percentile(50.0).expect("samples"));
                p99.push(i, block.percentile(99.0).expect("samples"));
                workload.kill();
            }
        }
        vec![p50, p99]
    }

    /// 7. A storm of standard and real-time signals at full speed while the child counts them.
    pub fn storm(&self) -> Vec<Row> {
        let n = self.names();
        let total = self.sizes.storm_signals;
        let mut cpu = Row::new(
            format!("storm: init CPU for {total} signals"),
            "CPU time (schedstat)",
            "ms",
            n,
        );
        let mut drain = Row::new("storm: drained after the last send", "wall clock", "ms", n);
        let mut delivered = Row::new(
            "storm: signals the child received",
            "the child's own count",
            "count",
            n,
        )
        .higher_is_better();
        let mut status = Row::new(
            "storm: child's exit status (42) passed on",
            "exit code",
            "ok",
            n,
        )
        .higher_is_better();
        let signals: Vec<i32> = [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
            libc::SIGTERM,
            libc::SIGWINCH,
            libc::SIGURG,
            libc::SIGPWR,
        ]
        .into_iter()
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect();
        for _ in 0..self.sizes.storm_rounds {
            for (i, init) in self.inits.iter().enumerate() {
                let mut workload =
                    Running::start(init.argv(&[], &self.probe_argv(&["storm-target", "quiet"])));
                workload.expect("storm-target ready");
                let pid1 = workload.pid1();
                let child = if init.is_none() {
                    pid1
                } else {
                    children_of(pid1)[0]
                };
                let target = Target::new(pid1);
                let cpu_before = cpu_ns(pid1);
                for k in 0..total {
                    target.send(signals[k % signals.len()]);
                }
                let sent = Instant::now();
                let deadline = sent + Duration::from_secs(600);
                while !nothing_pending(pid1) || !nothing_pending(child) {
                    assert!(
                        Instant::now() < deadline,
                        "{} never drained the storm",
                        init.name
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
                drain.push(i, sent.elapsed().as_secs_f64() * 1e3);
                if !init.is_none() {
                    cpu.push(i, (cpu_ns(pid1) - cpu_before) as f64 / 1e6);
                }
                let (code, rest) = workload.finish();
                let received: f64 = rest
                    .lines()
                    .filter_map(|l| {
                        l.strip_prefix("received ")?
                            .rsplit(' ')
                            .next()?
                            .parse::<f64>()
                            .ok()
                    })
                    .sum();
                delivered.push(i, received);
                status.push(i, f64::from(u8::from(code == 42)));
            }
        }
        cpu.notes[n - 1] = Some("0 (no init)".into());
        vec![cpu, drain, delivered, status]
    }

    /// 8. A tree of cooperating processes, each exiting on TERM; TERM to the init, as `docker
    /// stop` sends it, with its SIGKILL after the timeout.
    pub fn shutdown(&self) -> Vec<Row> {
        let n = self.names();
        let size = self.sizes.tree;
        let mut time = Row::new(
            format!("shutdown of {size} cooperating processes: TERM to exit"),
            "wall clock",
            "ms",
            n,
        );
        let mut finished = Row::new(
            "shutdown: processes that finished their TERM handler",
            "their own report",
            "count",
            n,
        )
        .higher_is_better();
        for _ in 0..self.sizes.shutdown_rounds {
            for (i, init) in self.inits.iter().enumerate() {
                let options: &[&str] = if init.name == "ferrinit" {
                    &["--grace-period", "10s"]
                } else {
                    &[]
                };
                let mut workload = Running::start(
                    init.argv(options, &self.probe_argv(&["tree", &size.to_string()])),
                );
                workload.expect("tree ready");
                let unshare = workload.child.id() as i32;
                let target = Target::new(workload.pid1());
                let started = Instant::now();
                target.send(libc::SIGTERM);
                if !run::wait_exit(unshare, self.sizes.stop_timeout) {
                    // What a runtime does once its stop timeout is over.
                    target.send(libc::SIGKILL);
                }
                let (_, rest) = workload.finish();
                let elapsed = started.elapsed().as_secs_f64() * 1e3;
                let done = rest.lines().filter(|l| *l == "done").count();
                time.push(i, elapsed);
                finished.push(i, done as f64);
            }
        }
        vec![time, finished]
    }
}

/// Neither the process nor its thread group has a signal waiting.
fn nothing_pending(pid: i32) -> bool {
    ["SigPnd", "ShdPnd"].iter().all(|field| {
        ferrinit_testkit::status_field(pid, field)
            .is_none_or(|mask| u64::from_str_radix(&mask, 16) == Ok(0))
    })
}
