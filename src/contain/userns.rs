//! The user namespace of the `pidns` level without privilege: its id maps, and why one was
//! refused.

use nix::errno::Errno;
use nix::unistd::Pid;

use super::ContainError;

/// Our own uid and gid, mapped to themselves: the command runs as the caller, and its files
/// keep their owner. `setgroups` must be denied before an unprivileged `gid_map`.
pub(super) fn write_id_maps(inner: Pid) -> std::io::Result<()> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let proc = format!("/proc/{inner}");
    std::fs::write(format!("{proc}/uid_map"), format!("{uid} {uid} 1\n"))?;
    match std::fs::write(format!("{proc}/setgroups"), "deny") {
        // Kernels before 3.19 have no setgroups file, and need none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => other?,
    }
    std::fs::write(format!("{proc}/gid_map"), format!("{gid} {gid} 1\n"))
}

/// Names the reason an unprivileged user namespace was refused.
pub(super) fn explain_user_namespace(e: ContainError) -> ContainError {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .map(|v| v.trim().to_owned())
            .ok()
    };
    match e {
        ContainError::Clone(Errno::ENOSPC) => match sysctl("user/max_user_namespaces") {
            Some(max) if max == "0" => ContainError::UserNamespacesDisabled,
            Some(max) => ContainError::UserNamespaceLimit(max),
            None => ContainError::UserNamespaceLimit("?".into()),
        },
        ContainError::Clone(errno @ (Errno::EPERM | Errno::EACCES)) => {
            if sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
                ContainError::AppArmorRestricted
            } else if sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
                ContainError::UnprivilegedUsernsDisabled
            } else {
                ContainError::NamespacesForbidden(errno)
            }
        }
        other => other,
    }
}
