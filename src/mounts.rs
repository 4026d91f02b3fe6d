//! Where a cgroup's directory is: `/proc/self/cgroup` names the cgroup in each hierarchy, and
//! `/proc/self/mountinfo` says where each hierarchy is mounted. One parser of both, for the
//! cgroup level of `--contain` and for the exit report's OOM counter.

use std::path::{Path, PathBuf};

/// From `/proc/self/cgroup`: the cgroup v2 path (the `0::PATH` line).
pub fn v2_cgroup(cgroups: &str) -> Option<&str> {
    within(cgroups, v2_cgroup_bytes(cgroups.as_bytes())?)
}

/// From `/proc/self/cgroup`: the path in the v1 hierarchy that holds the memory controller.
pub fn v1_memory_cgroup(cgroups: &str) -> Option<&str> {
    within(cgroups, v1_memory_cgroup_bytes(cgroups.as_bytes())?)
}

/// [`v2_cgroup`] of the file's bytes as read (the exit report's, at every start: no UTF-8
/// check of the whole file).
pub fn v2_cgroup_bytes(cgroups: &[u8]) -> Option<&[u8]> {
    if cgroups.starts_with(b"0::") {
        line_from(cgroups, 3)
    } else {
        line_from(cgroups, find(cgroups, b"\n0::")? + 4)
    }
}

/// [`v1_memory_cgroup`] of the file's bytes as read.
pub fn v1_memory_cgroup_bytes(text: &[u8]) -> Option<&[u8]> {
    // Lines are ID:CONTROLLERS:PATH; CONTROLLERS a comma-separated list. One search for the
    // name, then a look at its neighbours.
    let mut from = 0;
    loop {
        let at = from + find(&text[from..], b"memory")?;
        let end = at + b"memory".len();
        let item_starts = at > 0 && matches!(text[at - 1], b':' | b',');
        let item_ends = matches!(text.get(end), Some(b':' | b','));
        if item_starts && item_ends {
            let colon = end + find_byte(&text[end..], b':')?;
            return line_from(text, colon + 1);
        }
        from = end;
    }
}

/// The rest of the line of `text` that starts at byte `at`.
fn line_from(text: &[u8], at: usize) -> Option<&[u8]> {
    let rest = text.get(at..)?;
    Some(&rest[..find_byte(rest, b'\n').unwrap_or(rest.len())])
}

/// `part`, a slice of `text`'s bytes, as the `str` it is within `text`.
fn within<'a>(text: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    text.get(start..start + part.len())
}

/// Where `needle` first occurs in `haystack`: glibc's memchr finds each candidate first byte,
/// and the rest is compared there. The exit report searches /proc/self/cgroup at every start,
/// a few hundred bytes in which the first byte is rare: a byte loop, or memmem's set-up, costs
/// several times more.
pub fn find<const N: usize>(haystack: &[u8], needle: &[u8; N]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    loop {
        let at = from + find_byte(haystack.get(from..)?, first)?;
        if starts_with_at(haystack, at, needle) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Whether `needle` is at byte `at` of `text`. Compared as the fixed-size array it is: a few
/// register compares, no call.
pub fn starts_with_at<const N: usize>(text: &[u8], at: usize, needle: &[u8; N]) -> bool {
    text.get(at..at + N)
        .and_then(|bytes| <&[u8; N]>::try_from(bytes).ok())
        == Some(needle)
}

/// Where `byte` first occurs in `haystack` (glibc's memchr).
pub fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    // SAFETY: the slice is valid for its length; memchr only reads it.
    let at = unsafe { libc::memchr(haystack.as_ptr().cast(), byte.into(), haystack.len()) };
    (!at.is_null()).then(|| at as usize - haystack.as_ptr() as usize)
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` names it) under a mount of the
/// hierarchy that `is_hierarchy` picks by file system type and super options. Of several such
/// mounts, the last (the one on top) that shows `path`: a mount may show only part of the
/// hierarchy (its root field, as in a container), and `path` is taken relative to it. `None`
/// when no mount shows it.
pub fn cgroup_dir(
    mountinfo: &str,
    path: &str,
    is_hierarchy: impl Fn(&str, &str) -> bool,
) -> Option<PathBuf> {
    // Only cgroup mounts matter: one pass finds them, instead of splitting every line.
    mountinfo.rmatch_indices(" - cgroup").find_map(|(at, _)| {
        let start = mountinfo[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = mountinfo[at..]
            .find('\n')
            .map_or(mountinfo.len(), |i| at + i);
        let (before, after) = (&mountinfo[start..at], &mountinfo[at + 3..end]);
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let mut after = after.split(' ');
        let (fstype, _source, options) = (after.next()?, after.next()?, after.next()?);
        if !is_hierarchy(fstype, options) {
            return None;
        }
        let mut fields = before.split(' ');
        let root = unescape(fields.nth(3)?);
        let mount_point = unescape(fields.next()?);
        let rest = path.strip_prefix(root.trim_end_matches('/'))?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        Some(Path::new(&mount_point).join(rest.trim_start_matches('/')))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    fn v2(fstype: &str, _: &str) -> bool {
        fstype == "cgroup2"
    }

    fn v1_memory(fstype: &str, options: &str) -> bool {
        fstype == "cgroup" && options.split(',').any(|o| o == "memory")
    }

    #[test]
    fn finds_each_hierarchys_mount_on_a_hybrid_host() {
        assert_eq!(
            cgroup_dir(HYBRID, "/a/b", v2),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
        assert_eq!(
            cgroup_dir(HYBRID, "/m", v1_memory),
            Some(PathBuf::from("/sys/fs/cgroup/memory/m"))
        );
        assert_eq!(
            cgroup_dir("1 0 0:1 / / rw - ext4 /dev/sda rw", "/", v2),
            None
        );
    }

    #[test]
    fn takes_the_path_relative_to_a_mount_of_part_of_the_hierarchy() {
        let mounts = "1 0 0:1 / / rw - overlay overlay rw\n\
                      9 1 0:30 /pods/pod\\0401/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        let at = |path| cgroup_dir(mounts, path, v2);
        assert_eq!(
            at("/pods/pod 1/ctr"),
            Some(PathBuf::from("/sys/fs/cgroup/"))
        );
        assert_eq!(
            at("/pods/pod 1/ctr/sub"),
            Some(PathBuf::from("/sys/fs/cgroup/sub"))
        );
        // Not under that mount's root ("/pods/pod 10" is not inside "/pods/pod 1").
        assert_eq!(at("/pods/pod 10"), None);
    }

    #[test]
    fn of_several_mounts_the_latest_wins() {
        let mounts = "\
5 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
9 5 0:30 / /run/other rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup_dir(mounts, "/x", v2),
            Some(PathBuf::from("/run/other/x"))
        );
    }

    #[test]
    fn finds_the_cgroups_wherever_memory_sits_in_the_controller_list() {
        let cgroups = "5:cpu,memory,pids:/a b/c\n0::/d\n";
        assert_eq!(v1_memory_cgroup(cgroups), Some("/a b/c"));
        assert_eq!(v2_cgroup(cgroups), Some("/d"));
        assert_eq!(v2_cgroup("0::/\n"), Some("/"));
        assert_eq!(v1_memory_cgroup("0::/\n"), None);
        assert_eq!(
            v1_memory_cgroup("3:memory:/x:y\n"),
            Some("/x:y"),
            "a ':' in the path"
        );
        assert_eq!(v1_memory_cgroup("2:memory_extra:/z\n10:cpu:/\n"), None);
        assert_eq!(v2_cgroup("2:memory_extra:/z\n10:cpu:/\n"), None);
    }

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape(r"\04"), r"\04");
    }
}
