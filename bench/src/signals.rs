//! The signal workloads: forwarding one signal at a time, storms of two mixes, and fairness.
//! Storms and the fairness burst run as a uid of their own (see run::claim_signal_uid), so that no
//! other process can fill the real-time signal queue they depend on.

use std::io::Read;
use std::time::{Duration, Instant};

use ferrinit_testkit::children_of;

use crate::report::{Row, Samples};
use crate::run::{
    self, ForwardTrace, Running, SyscallCounter, Target, as_pid1, as_pid1_as_signal_uid, cpu_ns,
    nothing_pending, status_number,
};
use crate::workloads::Bench;

/// A mix of signals sent round-robin in a storm.
pub struct Mix {
    pub name: &'static str,
    pub signals: Vec<i32>,
}

/// Today's many-signal storm (10 standard signals and every real-time one: 41), and the
/// two-signal one issue #9 found (SIGUSR1 + SIGRTMIN+1).
pub fn mixes() -> [Mix; 2] {
    let many = [
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
    .collect::<Vec<_>>();
    [
        Mix {
            name: "41-signal mix",
            signals: many,
        },
        Mix {
            name: "two-signal mix",
            signals: vec![libc::SIGUSR1, libc::SIGRTMIN() + 1],
        },
    ]
}

/// The probe as a storm target: handlers for every catchable signal, counting.
fn storm_target(bench: &Bench) -> Vec<std::ffi::OsString> {
    bench.probe_argv(&["storm-target", "quiet"])
}

impl Bench {
    /// Workload 6: SIGUSR1 to the init, a byte back from the child, one at a time: the round trip
    /// in wall time, then (perf attached) the init's system calls per forwarded signal.
    pub fn one_at_a_time(&self) -> Vec<Row> {
        let n = self.names();
        let mut p50 = Row::new("signal round trip: p50", "wall clock", "µs", n);
        let mut p99 = Row::new("signal round trip: p99", "wall clock", "µs", n);
        let mut syscalls = Row::new(
            "one at a time: system calls of the init per forwarded signal",
            "perf stat raw_syscalls",
            "count",
            n,
        );
        let per_block = self.sizes.round_trips / self.sizes.latency_blocks;
        let counted = per_block.min(200);
        let echo = self.probe_argv(&["echo-signal", &libc::SIGUSR1.to_string()]);
        for _ in 0..self.sizes.latency_blocks {
            for (i, init) in self.inits.iter().enumerate() {
                let mut workload = Running::start(as_pid1(&init.argv(&[], &echo)));
                workload.expect("ready");
                // No init: straight to the child, which is PID 1 itself (it has a handler).
                let pid1 = workload.pid1();
                let target = Target::new(pid1);
                let mut byte = [0u8];
                let mut round_trip = || {
                    assert!(target.send(libc::SIGUSR1));
                    workload.stdout.read_exact(&mut byte).expect("echo");
                };
                let mut samples = Vec::with_capacity(per_block);
                for _ in 0..per_block {
                    let started = Instant::now();
                    round_trip();
                    samples.push(started.elapsed().as_secs_f64() * 1e6);
                }
                if !init.is_none() {
                    let counter = SyscallCounter::attach(pid1, &self.scratch);
                    for _ in 0..counted {
                        round_trip();
                    }
                    syscalls.push(i, counter.stop().all as f64 / counted as f64);
                }
                let block = Samples(samples);
                p50.push(i, block.percentile(50.0).expect("samples"));
                p99.push(i, block.percentile(99.0).expect("samples"));
                workload.kill();
            }
        }
        syscalls.notes[n - 1] = Some("n/a (no init)".into());
        vec![p50, p99, syscalls]
    }

    /// Workload 7: A storm of one mix at full speed while the child counts what arrives: the init's
    /// CPU and context switches, and whether anything was lost.
    pub fn storm(&self, mix: &Mix) -> Vec<Row> {
        let n = self.names();
        let total = self.sizes.storm_signals;
        let name = mix.name;
        let mut cpu = Row::new(
            format!("storm, {name}: init CPU for {total} signals"),
            "CPU time (schedstat)",
            "ms",
            n,
        );
        let mut switches = Row::new(
            format!("storm, {name}: init context switches"),
            "/proc/PID/status, both kinds",
            "count",
            n,
        );
        let mut drain = Row::new(
            format!("storm, {name}: drained after the last send"),
            "wall clock",
            "ms",
            n,
        );
        let mut refused = Row::new(
            format!("storm, {name}: sends refused (queue full)"),
            "pidfd_send_signal errors",
            "count",
            n,
        );
        let mut delivered = Row::new(
            format!("storm, {name}: signals the child received"),
            "the child's own count",
            "count",
            n,
        )
        .higher_is_better();
        let mut status = Row::new(
            format!("storm, {name}: child's exit status (42) passed on"),
            "exit code",
            "ok",
            n,
        )
        .higher_is_better();
        let context_switches = |pid| {
            status_number(pid, "voluntary_ctxt_switches")
                + status_number(pid, "nonvoluntary_ctxt_switches")
        };
        for _ in 0..self.sizes.storm_rounds {
            for (i, init) in self.inits.iter().enumerate() {
                let mut workload =
                    Running::start(as_pid1_as_signal_uid(&init.argv(&[], &storm_target(self))));
                workload.expect("storm-target ready");
                let pid1 = workload.pid1();
                let child = if init.is_none() {
                    pid1
                } else {
                    children_of(pid1)[0]
                };
                let target = Target::new(pid1);
                let (cpu_before, switches_before) = (cpu_ns(pid1), context_switches(pid1));
                let failed = (0..total)
                    .filter(|k| !target.send(mix.signals[k % mix.signals.len()]))
                    .count();
                let sent = Instant::now();
                run::wait_until_progressing(
                    &format!("{} to drain the storm", init.name),
                    || nothing_pending(pid1) && nothing_pending(child),
                    || cpu_ns(pid1) + cpu_ns(child),
                );
                drain.push(i, sent.elapsed().as_secs_f64() * 1e3);
                refused.push(i, failed as f64);
                if !init.is_none() {
                    cpu.push(i, (cpu_ns(pid1) - cpu_before) as f64 / 1e6);
                    switches.push(i, (context_switches(pid1) - switches_before) as f64);
                }
                let (code, rest) = workload.finish();
                signal_uid_unused();
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
        switches.notes[n - 1] = Some("0 (no init)".into());
        vec![cpu, switches, drain, refused, delivered, status]
    }

    /// Workload 7: A shorter storm of one mix with perf attached to the init: its system calls per
    /// signal it forwarded (kill, tgkill, pidfd_send_signal, ... counted alike).
    pub fn counted_storm(&self, mix: &Mix) -> Vec<Row> {
        let n = self.names();
        let total = self.sizes.counted_storm_signals;
        let name = mix.name;
        let mut per_forward = Row::new(
            format!("storm, {name}: system calls of the init per forwarded signal"),
            "perf stat raw_syscalls ÷ forwarding calls",
            "count",
            n,
        );
        let mut forwards = Row::new(
            format!("storm, {name}: signals forwarded of {total} sent"),
            "perf stat, forwarding calls",
            "count",
            n,
        );
        for (i, init) in self.inits.iter().enumerate() {
            if init.is_none() {
                continue;
            }
            let mut workload =
                Running::start(as_pid1_as_signal_uid(&init.argv(&[], &storm_target(self))));
            workload.expect("storm-target ready");
            let pid1 = workload.pid1();
            let child = children_of(pid1)[0];
            let target = Target::new(pid1);
            let counter = SyscallCounter::attach(pid1, &self.scratch);
            for k in 0..total {
                target.send(mix.signals[k % mix.signals.len()]);
            }
            run::wait_until_progressing(
                &format!("{} to drain the counted storm", init.name),
                || nothing_pending(pid1) && nothing_pending(child),
                || cpu_ns(pid1) + cpu_ns(child),
            );
            let counts = counter.stop();
            workload.finish();
            signal_uid_unused();
            if counts.forwards > 0 {
                per_forward.push(i, counts.all as f64 / counts.forwards as f64);
            }
            forwards.push(i, counts.forwards as f64);
        }
        for row in [&mut per_forward, &mut forwards] {
            row.notes[n - 1] = Some("n/a (no init)".into());
        }
        vec![per_forward, forwards]
    }

    /// Workload 9: Fairness: with the init stopped, a burst of real-time signals and then one
    /// SIGUSR1 become pending at once; once it runs again, strace records the order in which it
    /// forwards them. Rows: how many it forwarded before that SIGUSR1, and the most signals any one
    /// of them saw overtake it (sent after it, forwarded before it).
    pub fn fairness(&self) -> Vec<Row> {
        let n = self.names();
        let burst = self.sizes.fairness_burst;
        let mut before_usr1 = Row::new(
            format!(
                "fairness: signals forwarded before a SIGUSR1 sent after {burst} real-time ones"
            ),
            "strace order of the forwarding calls",
            "count",
            n,
        );
        let mut overtaken = Row::new(
            "fairness: most later signals forwarded before a pending one",
            "strace order of the forwarding calls",
            "count",
            n,
        );
        let real_time: Vec<i32> = (libc::SIGRTMIN() + 1..=libc::SIGRTMAX()).collect();
        let sent: Vec<i32> = (0..burst)
            .map(|k| real_time[k % real_time.len()])
            .chain([libc::SIGUSR1])
            .collect();
        let sent_names: Vec<String> = sent.iter().map(|&sig| strace_name(sig)).collect();
        for _ in 0..self.sizes.fairness_rounds {
            for (i, init) in self.inits.iter().enumerate() {
                if init.is_none() {
                    continue;
                }
                let mut workload =
                    Running::start(as_pid1_as_signal_uid(&init.argv(&[], &storm_target(self))));
                workload.expect("storm-target ready");
                let pid1 = workload.pid1();
                let target = Target::new(pid1);
                let trace = ForwardTrace::attach(pid1, &self.scratch);
                // SIGSTOP from an ancestor namespace always stops PID 1; SIGCONT resumes it
                // even though it is blocked (and then pending, to be forwarded like the rest).
                assert!(target.send(libc::SIGSTOP));
                run::wait_until("the init to stop", || matches!(run::state(pid1), 'T' | 't'));
                for &sig in &sent {
                    assert!(target.send(sig), "burst refused");
                }
                assert!(target.send(libc::SIGCONT));
                let forwarded_so_far = || -> Vec<String> {
                    trace
                        .signals()
                        .into_iter()
                        .filter(|s| s != "SIGCONT")
                        .collect()
                };
                // Until every signal is forwarded. An init that stops short of that is measured
                // as it is: what it forwarded once nothing more came for a stall timeout.
                run::until_stalled(
                    Duration::from_millis(2),
                    || forwarded_so_far().len() >= sent.len(),
                    || forwarded_so_far().len(),
                );
                let forwarded = trace.stop();
                let forwarded: Vec<String> =
                    forwarded.into_iter().filter(|s| s != "SIGCONT").collect();
                workload.kill();
                signal_uid_unused();
                match forwarded.iter().position(|s| s == "SIGUSR1") {
                    Some(at) => before_usr1.push(i, at as f64),
                    None => before_usr1.notes[i] = Some("SIGUSR1 never forwarded".into()),
                }
                overtaken.push(i, most_overtaken(&sent_names, &forwarded) as f64);
            }
        }
        for row in [&mut before_usr1, &mut overtaken] {
            row.notes[n - 1] = Some("n/a (no init)".into());
        }
        vec![before_usr1, overtaken]
    }
}

/// Waits until the last workload's processes are gone, so that none of their queued signals
/// count against the next one's limit.
fn signal_uid_unused() {
    let left = run::wait_signal_uid_unused();
    assert!(
        left.is_empty(),
        "processes {left:?} outlived their workload"
    );
}

/// A signal's name as strace prints it (its real-time names count from the kernel's 32).
fn strace_name(sig: i32) -> String {
    match sig {
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGCONT => "SIGCONT".into(),
        rt if rt >= 32 => format!("SIGRT_{}", rt - 32),
        other => format!("signal {other}"),
    }
}

/// For signals sent in the order `sent` and forwarded in the order `forwarded` (each signal
/// number queues first in, first out, so the k-th forward of a number is its k-th send): the
/// most signals sent after one of them that were forwarded before it.
fn most_overtaken(sent: &[String], forwarded: &[String]) -> usize {
    let mut next_of: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (index, name) in sent.iter().enumerate().rev() {
        next_of.entry(name).or_default().push(index);
    }
    // The send index of each forward, in forwarding order.
    let order: Vec<usize> = forwarded
        .iter()
        .filter_map(|name| next_of.get_mut(name.as_str())?.pop())
        .collect();
    (0..order.len())
        .map(|f| {
            order[..f]
                .iter()
                .filter(|&&earlier| earlier > order[f])
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::most_overtaken;

    fn names(list: &str) -> Vec<String> {
        list.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn overtaking_counts_later_signals_forwarded_first() {
        let sent = names("B A A A C");
        assert_eq!(most_overtaken(&sent, &names("B A A A C")), 0);
        // C, sent last, forwarded first: each of the others waited behind it alone.
        assert_eq!(most_overtaken(&sent, &names("C B A A A")), 1);
        // The kernel's order, lowest first: the three As overtake B.
        assert_eq!(most_overtaken(&sent, &names("A A A B C")), 3);
    }
}
