//! The contenders: ferrinit, the peers as Debian ships them, the floor (the least an init can
//! do, bench/c/floor.c, compiled here) and no init at all (the limit).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Init {
    pub name: &'static str,
    /// `None` for "no init": the workload's program is PID 1 itself.
    pub path: Option<PathBuf>,
    /// Placed between the init and the command.
    separator: &'static [&'static str],
}

/// What the peers need and how to get them.
pub const PEERS_HINT: &str = "install the peers with: apt-get install tini dumb-init catatonit";

impl Init {
    pub fn ferrinit(path: PathBuf) -> Init {
        Init {
            name: "ferrinit",
            path: Some(path),
            separator: &["--"],
        }
    }

    /// The peers from their Debian packages, or the names of the missing ones.
    pub fn peers() -> Result<Vec<Init>, Vec<&'static str>> {
        let peers = [
            ("tini-static", "/usr/bin/tini-static", &["--"][..]),
            // dumb-init takes no `--`; its first non-option is the command.
            ("dumb-init", "/usr/bin/dumb-init", &[][..]),
            ("catatonit", "/usr/bin/catatonit", &["--"][..]),
        ];
        let missing: Vec<&str> = peers
            .iter()
            .filter(|(_, path, _)| !std::path::Path::new(path).is_file())
            .map(|(name, _, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(peers
            .iter()
            .map(|&(name, path, separator)| Init {
                name,
                path: Some(PathBuf::from(path)),
                separator,
            })
            .collect())
    }

    /// bench/c/floor.c, compiled static with `cc -O2` into `dir`.
    pub fn floor(dir: &Path) -> Result<Init, String> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/floor.c");
        let binary = dir.join("floor");
        let _ = std::fs::create_dir_all(dir);
        let output = std::process::Command::new("cc")
            .args(["-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&binary)
            .arg(&source)
            .output()
            .map_err(|e| format!("cannot run cc ({e}): apt-get install gcc libc6-dev"))?;
        if !output.status.success() {
            return Err(format!(
                "cc {} failed: {}",
                source.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Init {
            name: "floor",
            path: Some(binary),
            separator: &[],
        })
    }

    pub fn none() -> Init {
        Init {
            name: "no init",
            path: None,
            separator: &[],
        }
    }

    pub fn is_none(&self) -> bool {
        self.path.is_none()
    }

    /// `INIT [OPTIONS] -- COMMAND...`, or just `COMMAND...` for no init.
    pub fn argv(&self, options: &[&str], command: &[OsString]) -> Vec<OsString> {
        let mut argv = Vec::new();
        if let Some(path) = &self.path {
            argv.push(path.clone().into_os_string());
            argv.extend(options.iter().map(OsString::from));
            argv.extend(self.separator.iter().map(OsString::from));
        }
        argv.extend(command.iter().cloned());
        argv
    }
}
