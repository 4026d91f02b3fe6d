//! The environment, read in one pass: the few variables ferrinit itself looks at, and the block
//! of pointers handed unchanged to the child. ferrinit never modifies its environment, so the
//! strings `environ` points to stay valid for its whole life.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

pub struct Environ {
    /// `environ` itself, NULL-terminated: the child's `envp`, borrowed in place.
    block: *const *const libc::c_char,
    /// The entries ferrinit reads itself: FERRINIT_*, TINI_*, PATH, LISTEN_*.
    ours: Vec<(&'static [u8], &'static [u8])>,
}

impl Environ {
    pub fn capture() -> Environ {
        let mut ours = Vec::new();
        // SAFETY: `environ` is the process's NULL-terminated array of C strings, which nothing
        // in ferrinit ever modifies.
        let block = unsafe { environ };
        for entry in Environ::entries_of(block) {
            // SAFETY: every entry is a valid C string.
            if !unsafe { is_ours(entry) } {
                continue;
            }
            // SAFETY: as above; the strings live as long as the process.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            if let Some(name_and_value) = split(bytes) {
                ours.push(name_and_value);
            }
        }
        Environ { block, ours }
    }

    /// The NULL-terminated block, as execve takes it (a null `environ` is an empty one).
    pub fn block(&self) -> *const *const libc::c_char {
        const EMPTY: &[usize; 1] = &[0];
        if self.block.is_null() {
            EMPTY.as_ptr().cast()
        } else {
            self.block
        }
    }

    /// Every `NAME=value` entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = *const libc::c_char> + use<> {
        Environ::entries_of(self.block)
    }

    fn entries_of(block: *const *const libc::c_char) -> impl Iterator<Item = *const libc::c_char> {
        let mut at = 0;
        std::iter::from_fn(move || {
            if block.is_null() {
                return None;
            }
            // SAFETY: the array is NULL-terminated and we stop at the NULL.
            let entry = unsafe { *block.add(at) };
            at += 1;
            (!entry.is_null()).then_some(entry)
        })
    }

    /// For a process that takes over from the one that captured this environment (the inner
    /// ferrinit of `--contain`): the same entries, with a `LISTEN_PID` that named `from` now
    /// naming `to`, so that socket activation still reaches the child. `None` when it named
    /// anyone else, or nobody.
    pub fn moved_listen_pid(&self, from: u32, to: u32) -> Option<Environ> {
        if self.get("LISTEN_PID")? != OsStr::new(&from.to_string()) {
            return None;
        }
        // Once per process, and kept for its whole life, as `environ`'s own strings are.
        let entry: &'static CStr = Box::leak(
            std::ffi::CString::new(format!("LISTEN_PID={to}"))
                .ok()?
                .into_boxed_c_str(),
        );
        let named = |e: *const libc::c_char| {
            // SAFETY: every non-null entry is a valid C string from `environ`.
            !e.is_null()
                && unsafe { CStr::from_ptr(e) }
                    .to_bytes()
                    .starts_with(b"LISTEN_PID=")
        };
        let block: Vec<*const libc::c_char> = self
            .entries()
            .map(|e| if named(e) { entry.as_ptr() } else { e })
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let block = Box::leak(block.into_boxed_slice()).as_ptr();
        let ours = self
            .ours
            .iter()
            .map(|&(name, value)| match name {
                b"LISTEN_PID" => split(entry.to_bytes()).unwrap_or((name, value)),
                _ => (name, value),
            })
            .collect();
        Some(Environ { block, ours })
    }

    /// The first value of `name`, as getenv(3) finds it.
    pub fn get(&self, name: &str) -> Option<&'static OsStr> {
        self.ours
            .iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, value)| OsStr::from_bytes(value))
    }
}

fn split(entry: &'static [u8]) -> Option<(&'static [u8], &'static [u8])> {
    let equals = entry.iter().position(|&b| b == b'=')?;
    Some((&entry[..equals], &entry[equals + 1..]))
}

/// Whether the C string `entry` starts as the entries ferrinit reads: FERRINIT_*, TINI_*,
/// LISTEN_*, PATH. Compared in place, up to the first byte that differs (the string's NUL at the
/// latest): most entries are ruled out at their first byte, without measuring them.
///
/// # Safety
/// `entry` must be a valid C string.
unsafe fn is_ours(entry: *const libc::c_char) -> bool {
    let entry = entry.cast::<u8>();
    // SAFETY: a C string has at least its NUL.
    let prefix: &[u8] = match unsafe { *entry } {
        b'F' => b"FERRINIT_",
        b'T' => b"TINI_",
        b'L' => b"LISTEN_",
        b'P' => b"PATH=",
        _ => return false,
    };
    let mut at = 1;
    // SAFETY: byte `at` is read only if the bytes before it matched non-NUL bytes, so it is
    // within the string.
    while at < prefix.len() && unsafe { *entry.add(at) } == prefix[at] {
        at += 1;
    }
    at == prefix.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_variables_ferrinit_reads_are_its_own() {
        // SAFETY: C string literals.
        let ours = |entry: &CStr| unsafe { is_ours(entry.as_ptr()) };
        for entry in [
            c"FERRINIT_X=1",
            c"TINI_SUBREAPER=",
            c"LISTEN_PID=7",
            c"PATH=/bin",
        ] {
            assert!(ours(entry), "{entry:?}");
        }
        for entry in [
            c"PATHS=x",
            c"PAT",
            c"",
            c"TIN",
            c"LD_PRELOAD=x",
            c"FERRINIT",
            c"PWD=/",
        ] {
            assert!(!ours(entry), "{entry:?}");
        }
    }
}
