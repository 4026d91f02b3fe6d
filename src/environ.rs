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
            // Most entries are ruled out by their first byte, before measuring them.
            // SAFETY: every entry is a valid C string, at least its NUL long.
            if !matches!(unsafe { *entry.cast::<u8>() }, b'F' | b'T' | b'P' | b'L') {
                continue;
            }
            // SAFETY: as above; the strings live as long as the process.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            if let Some((name, value)) = split(bytes)
                && is_ours(name)
            {
                ours.push((name, value));
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
