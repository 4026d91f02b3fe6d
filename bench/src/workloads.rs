//! The workloads that are not about signals: size, idle cost, start-up, reaping, shutdown.
//! Every init runs each one as PID 1 of a fresh PID namespace, interleaved (A B C D E A B C D E
//! ...) so that drift on this shared machine hits all alike. The signal workloads are in
//! signals.rs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrinit_testkit::{children_of, zombies_of};

use crate::inits::Init;
use crate::report::{Row, Samples};
use crate::run::{self, Running, Target, as_pid1, cpu_ns, status_number};

/// How much of everything: the default run (a few minutes at most), the full run, or a smoke
/// run that only proves the harness works.
pub struct Sizes {
    pub name: &'static str,
    pub idle: Duration,
    pub idle_rounds: usize,
    pub startup_runs: usize,
    pub startup_blocks: usize,
    /// Start-up system calls and instructions: counts, nearly or fully deterministic.
    pub count_repeats: usize,
    pub orphans: usize,
    pub reap_rounds: usize,
    pub round_trips: usize,
    pub latency_blocks: usize,
    pub storm_signals: usize,
    pub storm_rounds: usize,
    /// The storm whose system calls perf counts (separate, so that counting costs no storm CPU).
    pub counted_storm_signals: usize,
    pub fairness_burst: usize,
    pub fairness_rounds: usize,
    pub tree: usize,
    pub shutdown_rounds: usize,
    /// How long a runtime waits after SIGTERM before SIGKILL (Docker's default is 10 s).
    pub stop_timeout: Duration,
}

impl Sizes {
    pub const DEFAULT: Sizes = Sizes {
        name: "default",
        idle: Duration::from_secs(3),
        idle_rounds: 1,
        startup_runs: 160,
        startup_blocks: 4,
        count_repeats: 2,
        orphans: 5_000,
        reap_rounds: 1,
        round_trips: 1_000,
        latency_blocks: 2,
        storm_signals: 20_000,
        storm_rounds: 3,
        counted_storm_signals: 2_000,
        fairness_burst: 200,
        fairness_rounds: 2,
        tree: 20,
        shutdown_rounds: 1,
        stop_timeout: Duration::from_secs(2),
    };

    pub const FULL: Sizes = Sizes {
        name: "full",
        idle: Duration::from_secs(10),
        idle_rounds: 3,
        startup_runs: 1000,
        startup_blocks: 10,
        count_repeats: 3,
        orphans: 100_000,
        reap_rounds: 3,
        round_trips: 10_000,
        latency_blocks: 10,
        storm_signals: 100_000,
        storm_rounds: 5,
        counted_storm_signals: 20_000,
        fairness_burst: 200,
        fairness_rounds: 5,
        tree: 50,
        shutdown_rounds: 3,
        stop_timeout: Duration::from_secs(10),
    };

    pub const SMOKE: Sizes = Sizes {
        name: "smoke",
        idle: Duration::from_millis(500),
        idle_rounds: 1,
        startup_runs: 10,
        startup_blocks: 2,
        count_repeats: 1,
        orphans: 500,
        reap_rounds: 1,
        round_trips: 100,
        latency_blocks: 2,
        storm_signals: 2_000,
        storm_rounds: 1,
        counted_storm_signals: 500,
        fairness_burst: 100,
        fairness_rounds: 1,
        tree: 5,
        shutdown_rounds: 1,
        stop_timeout: Duration::from_millis(500),
    };
}

/// Environment sizes for the start-up instruction counts: the environment is copied and
/// scanned at start-up, so its size moves the count.
pub const ENV_SIZES: [usize; 3] = [0, 30, 200];

/// `count` variables `BENCH_VAR_k=` with 32 characters each, as a fixed, documented environment.
pub fn environment(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|k| (format!("BENCH_VAR_{k:03}"), "x".repeat(32)))
        .collect()
}

pub struct Bench {
    pub inits: Vec<Init>,
    pub probe: PathBuf,
    pub sizes: Sizes,
    /// Where perf and strace write (under target/).
    pub scratch: PathBuf,
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

impl Bench {
    pub fn names(&self) -> usize {
        self.inits.len()
    }

    pub fn probe_argv(&self, args: &[&str]) -> Vec<OsString> {
        let mut argv = vec![self.probe.clone().into_os_string()];
        argv.extend(os(args));
        argv
    }

    /// Workload 1: The size of each init's binary, and what kind of binary it is.
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

    /// Workload 2 and 3: Each init idle for a while with a sleeping child: wake-ups, CPU, memory.
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
                let mut workload =
                    Running::start(as_pid1(&init.argv(&[], &self.probe_argv(&["wait"]))));
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

    /// Workload 4: `INIT -- /bin/true`, again and again, against `/bin/true` alone: CPU and faults.
    pub fn startup_cpu(&self) -> Vec<Row> {
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
        vec![cpu, above, faults, switches, wall]
    }

    /// Workload 5: A generator makes many orphans that exit at once; the init must reap them all.
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
                let mut workload = Running::start(as_pid1(&init.argv(&[], &argv)));
                workload.expect("ready");
                let pid = workload.pid1();
                let (cpu_before, started) = (cpu_ns(pid), Instant::now());
                workload.write(&format!("{orphans}\n"));
                workload.expect("wave-done");
                // A reaping init uses CPU: only one that stopped reaping stalls.
                let reaped_all = run::until_stalled(
                    Duration::from_millis(1),
                    || children_of(pid).len() <= 1 && zombies_of(pid).is_empty(),
                    || cpu_ns(pid),
                );
                assert!(reaped_all, "{} stopped reaping, orphans left", init.name);
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

    /// Workload 4: The system calls of `INIT -- /bin/true`: the whole tree's (unshare, the init,
    /// the child, /bin/true) counted by perf, less the same tree with no init.
    pub fn startup_syscalls(&self) -> Vec<Row> {
        let n = self.names();
        let mut tree = Row::new(
            "start-up: system calls of the whole tree",
            "perf stat raw_syscalls",
            "count",
            n,
        );
        let mut init_and_child = Row::new(
            "start-up: system calls of the init and its child before exec",
            "perf stat, tree less no init",
            "count",
            n,
        );
        let true_argv = os(&["/bin/true"]);
        for _ in 0..self.sizes.count_repeats {
            let counts: Vec<u64> = self
                .inits
                .iter()
                .map(|init| {
                    run::syscalls_of_tree(&as_pid1(&init.argv(&[], &true_argv)), &self.scratch).all
                })
                .collect();
            let baseline = counts[n - 1] as f64;
            for (i, &count) in counts.iter().enumerate() {
                tree.push(i, count as f64);
                init_and_child.push(i, count as f64 - baseline);
            }
        }
        vec![tree, init_and_child]
    }

    /// Workload 4: Instructions of the init alone in `INIT -- /bin/true` (callgrind,
    /// deterministic), under `env -i` and with more variables: one row per environment size.
    pub fn startup_instructions(&self) -> Vec<Row> {
        let n = self.names();
        let true_argv = os(&["/bin/true"]);
        let mut rows = Vec::new();
        for size in ENV_SIZES {
            let title = if size == 0 {
                "start-up: instructions of the init under env -i".to_owned()
            } else {
                format!("start-up: instructions of the init, {size} variables")
            };
            let mut row = Row::new(title, "callgrind (exact)", "count", n);
            let env = environment(size);
            for _ in 0..self.sizes.count_repeats {
                for (i, init) in self.inits.iter().enumerate() {
                    let count = if init.is_none() {
                        Some(0)
                    } else {
                        run::instructions(&init.argv(&[], &true_argv), &env)
                    };
                    match count {
                        Some(count) => row.push(i, count as f64),
                        None => row.notes[i] = Some("callgrind failed".into()),
                    }
                }
            }
            rows.push(row);
        }
        rows
    }

    /// Workload 8: A tree of cooperating processes, each exiting on TERM; TERM to the init, as
    /// `docker stop` sends it, with its SIGKILL after the timeout.
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
        // Not stopping within the stop timeout is a result (a loaded machine may cause it), never
        // a failure: the SIGKILL ends the run as a runtime's would.
        let stop_secs = self.sizes.stop_timeout.as_secs_f64();
        let mut killed = Row::new(
            format!("shutdown: runs that did not stop within {stop_secs} s (SIGKILLed)"),
            "the stop timeout passing",
            "count",
            n,
        );
        for _ in 0..self.sizes.shutdown_rounds {
            for (i, init) in self.inits.iter().enumerate() {
                let options: &[&str] = if init.name == "ferrinit" {
                    &["--grace-period", "10s"]
                } else {
                    &[]
                };
                let mut workload = Running::start(as_pid1(
                    &init.argv(options, &self.probe_argv(&["tree", &size.to_string()])),
                ));
                workload.expect("tree ready");
                let unshare = workload.child.id() as i32;
                let target = Target::new(workload.pid1());
                let started = Instant::now();
                target.send(libc::SIGTERM);
                let stopped = run::wait_exit(unshare, self.sizes.stop_timeout);
                if !stopped {
                    // What a runtime does once its stop timeout is over.
                    target.send(libc::SIGKILL);
                }
                killed.push(i, f64::from(u8::from(!stopped)));
                let (_, rest) = workload.finish();
                let elapsed = started.elapsed().as_secs_f64() * 1e3;
                let done = rest.lines().filter(|l| *l == "done").count();
                time.push(i, elapsed);
                finished.push(i, done as f64);
            }
        }
        vec![time, finished, killed]
    }
}
