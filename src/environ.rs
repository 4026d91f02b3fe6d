//! The environment, read in one pass: the few variables ferrinit itself looks at, and the block
//! of pointers handed unchanged to the child. ferrinit never modifies its environment, so the
//! strings `environ` points to stay valid for its whole life.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

pub struct Environ {
    /// Every `NAME=value` entry, NULL-terminated: the child's `envp`.
    pub entries: Vec<*const libc::c_char>,
    /// The entries ferrinit reads itself: FERRINIT_*, TINI_*, PATH, LISTEN_*.
    ours: Vec<(&'static [u8], &'static [u8])>,
}

impl Environ {
    pub fn capture() -> Environ {
        let mut entries = Vec::new();
        let mut ours = Vec::new();
        // SAFETY: `environ` is the process's NULL-terminated array of C strings, which nothing
        // in ferrinit ever modifies.
        unsafe {
            let mut count = 0;
            while !environ.is_null() && !(*environ.add(count)).is_null() {
                count += 1;
            }
            let all = std::slice::from_raw_parts(environ, count);
            entries.reserve_exact(count + 1);
            entries.extend_from_slice(all);
            // Most entries are ruled out by their first byte, before measuring them.
            for &entry in all
                .iter()
                .filter(|&&e| matches!(*e.cast::<u8>(), b'F' | b'T' | b'P' | b'L'))
            {
                let bytes = CStr::from_ptr(entry).to_bytes();
                if let Some((name, value)) = split(bytes)
                    && is_ours(name)
                {
                    ours.push((name, value));
                }
            }
        }
        entries.push(std::ptr::null());
        Environ { entries, ours }
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

fn is_ours(name: &[u8]) -> bool {
    name.starts_with(b"FERRINIT_")
        || name.starts_with(b"TINI_")
        || name.starts_with(b"LISTEN_")
        || name == b"PATH"
}
