//! The new mount API (fsopen, fsconfig, fsmount, move_mount) with the kernel's
//! own words in every error: a file-system context collects messages
//! ("e overlay: ...") that say far more than an errno.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{self as m, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

/// Why a mount step failed: the step, the errno and the kernel's messages.
#[derive(Debug)]
pub(crate) struct MountError {
    pub errno: Errno,
    pub text: String,
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A file-system context being configured.
pub(crate) struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    /// `fsopen(fstype)`.
    pub fn open(fstype: &'static str) -> Result<FsContext, MountError> {
        match m::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(fd) => Ok(FsContext { fd, fstype }),
            Err(errno) => Err(MountError {
                errno,
                text: match errno {
                    Errno::PERM => {
                        format!("mounting {fstype} needs CAP_SYS_ADMIN (run as root on the host)")
                    }
                    Errno::NODEV => format!(
                        "the kernel has no {fstype} file system (load its module, or build the kernel with it)"
                    ),
                    Errno::NOSYS => {
                        "the kernel lacks the new mount API (fsopen, Linux 5.2+)".into()
                    }
                    e => format!("fsopen({fstype}): {}", std::io::Error::from(e)),
                },
            }),
        }
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set(&self, key: &str, value: impl AsRef<Path>) -> Result<(), MountError> {
        let value = value.as_ref();
        m::fsconfig_set_string(self.fd.as_fd(), key, value)
            .map_err(|e| self.error(e, &format!("{key}={}", value.display())))
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    pub fn flag(&self, key: &str) -> Result<(), MountError> {
        m::fsconfig_set_flag(self.fd.as_fd(), key).map_err(|e| self.error(e, key))
    }

    /// Create the file system and return a detached mount of it.
    pub fn mount(self, attrs: MountAttrFlags) -> Result<OwnedFd, MountError> {
        m::fsconfig_create(self.fd.as_fd()).map_err(|e| self.error(e, "create"))?;
        m::fsmount(self.fd.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| self.error(e, "fsmount"))
    }

    /// An error of `step`, with whatever the kernel logged in this context.
    fn error(&self, errno: Errno, step: &str) -> MountError {
        let mut text = format!("{} {step}: {}", self.fstype, std::io::Error::from(errno));
        for msg in self.messages() {
            text.push_str("; kernel: ");
            text.push_str(&msg);
        }
        MountError { errno, text }
    }

    /// The messages queued on the context (read until none is left).
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..16 {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) if n > 0 => {
                    let s = String::from_utf8_lossy(&buf[..n]);
                    // "e overlay: msg" / "w ..." / "i ...": keep the text.
                    out.push(s.get(2..).unwrap_or(&s).trim().to_string());
                }
                _ => break,
            }
        }
        out
    }
}

/// Attach a detached mount at `target`.
pub(crate) fn attach(mnt: &OwnedFd, target: &Path) -> Result<(), MountError> {
    m::move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|errno| MountError {
        errno,
        text: format!(
            "move_mount to {}: {}",
            target.display(),
            std::io::Error::from(errno)
        ),
    })
}
