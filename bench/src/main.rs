//! ferrinit-bench: ferrinit against tini-static, dumb-init, catatonit and no init at all, on the
//! same workloads, interleaved, in one run. Writes BENCHMARKS.md and its chart.
//!
//!   cargo run --release -p ferrinit-bench              # the full run (a few minutes)
//!   cargo run --release -p ferrinit-bench -- --smoke   # a few iterations: proves it works
//!
//! It installs nothing: the peers come from Debian (apt-get install tini dumb-init catatonit),
//! valgrind counts instructions, unshare (util-linux) makes the namespaces.

mod inits;
mod report;
mod run;
mod workloads;

use std::fmt::Write as _;
use std::path::PathBuf;

use inits::Init;
use report::Row;
use workloads::{Bench, Sizes};

struct Options {
    smoke: bool,
    out: PathBuf,
    chart: PathBuf,
}

fn options() -> Result<Options, String> {
    let root = ferrinit_testkit::workspace_root();
    let mut smoke = false;
    let (mut out, mut chart) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => smoke = true,
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a file")?)),
            "--chart" => chart = Some(PathBuf::from(args.next().ok_or("--chart needs a file")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: ferrinit-bench [--smoke] [--out BENCHMARKS.md] [--chart ratios.svg]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument '{other}'; see --help")),
        }
    }
    let scratch = root.join("target/bench-smoke");
    let default_dir = if smoke { scratch } else { root.clone() };
    Ok(Options {
        smoke,
        out: out.unwrap_or_else(|| default_dir.join("BENCHMARKS.md")),
        chart: chart.unwrap_or_else(|| {
            if smoke {
                default_dir.join("ratios.svg")
            } else {
                root.join("bench/ratios.svg")
            }
        }),
    })
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ferrinit-bench: {message}");
            std::process::exit(2);
        }
    };
    let peers = match Init::peers() {
        Ok(peers) => peers,
        Err(missing) => {
            eprintln!(
                "ferrinit-bench: missing {}: {}",
                missing.join(", "),
                inits::PEERS_HINT
            );
            std::process::exit(2);
        }
    };
    for tool in ["unshare", "file"] {
        if !run::have(tool) {
            eprintln!("ferrinit-bench: '{tool}' is missing");
            std::process::exit(2);
        }
    }
    eprintln!("ferrinit-bench: building the static ferrinit and the probe ...");
    let artifacts = ferrinit_testkit::artifacts();
    let mut inits = vec![Init::ferrinit(artifacts.ferrinit.clone())];
    inits.extend(peers);
    inits.push(Init::none());
    let bench = Bench {
        inits,
        probe: artifacts.probe.clone(),
        sizes: if options.smoke {
            Sizes::SMOKE
        } else {
            Sizes::FULL
        },
    };
    let report = measure(&bench, &options);
    if let Some(dir) = options.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&options.out, report).expect("write the report");
    eprintln!(
        "ferrinit-bench: wrote {} and {}",
        options.out.display(),
        options.chart.display()
    );
}

fn measure(bench: &Bench, options: &Options) -> String {
    let names: Vec<&str> = bench.inits.iter().map(|init| init.name).collect();
    let step = |name: &str| eprintln!("ferrinit-bench: {name} ...");
    step("1/8 binary size");
    let (size, kinds) = bench.sizes();
    step("2-3/8 idle cost and memory");
    let idle = bench.idle();
    step("4/8 start-up");
    let startup = bench.startup();
    step("5/8 reaping");
    let reaping = bench.reaping();
    step("6/8 signal latency");
    let latency = bench.latency();
    step("7/8 signal storm");
    let storm = bench.storm();
    step("8/8 shutdown");
    let shutdown = bench.shutdown();

    let (reference, limit) = (1, names.len() - 1);
    let chart_rows: Vec<&Row> = [
        &size,
        &idle[0],
        &idle[2],
        &startup[1],
        &startup[5],
        &reaping[1],
        &latency[0],
        &latency[1],
        &storm[0],
        &storm[1],
        &shutdown[0],
    ]
    .into_iter()
    .collect();
    let chart = report::svg(&names, &chart_rows, reference);
    if let Some(dir) = options.chart.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&options.chart, chart).expect("write the chart");

    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo run --release -p ferrinit-bench`{} on {}: {}. Every number below comes from that one run.\n",
        if options.smoke {
            " -- --smoke (a smoke run: too few iterations to mean anything)"
        } else {
            ""
        },
        host_date(),
        host_description()
    );
    let _ = writeln!(
        out,
        "Each init runs every workload as PID 1 of a fresh PID namespace (`unshare --pid --fork --mount-proc`), the inits interleaved (A B C D E A B ...) so that drift on this shared, noisy machine hits all alike. Cells are medians with min–max over the repeats; the last two columns are ferrinit's median over tini-static's and over no init at all (the physical limit: the workload's own program as PID 1). Where this machine allows it, costs are CPU time, instruction counts and context switches rather than wall time; the second column says which. dumb-init is a dynamic binary here (Debian builds no static one): its size excludes libc.\n"
    );
    let chart_path = options
        .chart
        .strip_prefix(options.out.parent().unwrap_or(std::path::Path::new("")))
        .unwrap_or(&options.chart);
    let _ = writeln!(
        out,
        "![each workload relative to tini-static]({})\n",
        chart_path.display()
    );

    let _ = writeln!(out, "## Headline\n");
    let headline: Vec<Row> = [
        (&idle[0], "idle: wake-ups per 10 s"),
        (&idle[1], "idle: CPU per 10 s"),
        (&idle[2], "idle: resident memory"),
        (&size, "static binary size"),
        (&startup[1], "start-up: CPU above no init"),
        (&startup[5], "start-up: instructions of the init"),
        (&reaping[1], "reaping: CPU per orphan"),
        (&latency[0], "signal round trip p50"),
        (&latency[1], "signal round trip p99"),
        (&storm[0], "signal storm: init CPU"),
        (&storm[1], "storm: drained after the last send"),
        (
            &shutdown[1],
            "shutdown: processes that finished their TERM handler",
        ),
    ]
    .into_iter()
    .map(|(row, title)| row.titled(title))
    .collect();
    out.push_str(&report::table(&names, &headline, reference, limit));

    let sections: Vec<(&str, &str, Vec<&Row>)> = vec![
        (
            "1. Binary size",
            "The static build, as shipped.",
            vec![&size],
        ),
        (
            "2–3. Idle cost and memory",
            "Each init with a child that sleeps, all in the same window; tini's `sigtimedwait` times out once a second.",
            idle.iter().collect(),
        ),
        (
            "4. Start-up overhead",
            "`unshare --pid --fork --mount-proc INIT -- /bin/true`, against `/bin/true` alone. CPU from wait4 covers unshare, the init and /bin/true; the row above no init is the difference, per interleaved block. Instructions are the init's own (callgrind, children not traced), deterministic.",
            startup.iter().collect(),
        ),
        (
            "5. Reaping throughput",
            "A generator in this repository (the test probe, Rust) double-forks orphans that exit at once, as fast as it can; measured until the init has reaped the last one, with no zombie left in /proc.",
            reaping.iter().collect(),
        ),
        (
            "6. Signal forwarding latency",
            "SIGUSR1 to the init, the child writes a byte back per signal; one at a time. No init: the signal goes straight to the child.",
            latency.iter().collect(),
        ),
        (
            "7. Signal storm",
            "Standard and real-time signals mixed, sent as fast as pidfd_send_signal goes while the child counts them in its handlers; drained means nothing pending at the init or the child. Standard signals coalesce, so fewer arrive than are sent; real-time ones queue. tini and catatonit forward no SIGTTIN/SIGTTOU (not in the mix).",
            storm.iter().collect(),
        ),
        (
            "8. Shutdown",
            "A tree of cooperating processes that each exit on TERM. TERM to the init, then SIGKILL after the stop timeout, as `docker stop` does. ferrinit runs with `--grace-period 10s`; the peers with their defaults, so when the child exits they exit and the kernel SIGKILLs the rest. No init: the program as PID 1 ignores TERM and waits for the SIGKILL.",
            shutdown.iter().collect(),
        ),
    ];
    for (title, text, rows) in sections {
        let _ = writeln!(out, "\n## {title}\n\n{text}\n");
        let rows: Vec<Row> = rows.into_iter().cloned().collect();
        out.push_str(&report::table(&names, &rows, reference, limit));
        if title.starts_with("1.") {
            let _ = writeln!(out);
            for (name, kind) in names.iter().zip(&kinds) {
                let _ = writeln!(out, "- {name}: {kind}");
            }
        }
    }
    out
}

fn host_date() -> String {
    command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

fn host_description() -> String {
    let kernel = command_output("uname", &["-sr"]);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|m| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{kernel}, {cpu}, {cores} cores")
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
