//! Who may stand between us and the socket: the checks that keep another local user from planting a
//! directory or a socket where ours should be.
//!
//! - The socket's directory is ours or refused: [`prepare_socket_dir`] creates it `0700` without following
//!   a symbolic link at its last component, and accepts an existing one only if it is owned by this user
//!   or root, and either writable by nobody else or sticky (a shared `/tmp`, where nobody can remove or
//!   rename another user's files; a socket planted there by another user is refused by its owner). A symbolic link is followed only if this user or root made it.
//! - Before connecting, a client checks the same of the directory and that the socket file is a socket
//!   owned by this user ([`check_socket`]); after connecting, that the process serving it runs as this
//!   user (peer credentials, `check_peer`).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a socket or its directory is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Unsafe {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: Reason,
}

/// What is wrong with a socket or its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A symbolic link made by another user.
    LinkOwnedBy(u32),
    /// Not a directory.
    NotADirectory,
    /// Owned by another user.
    OwnedBy(u32),
    /// Ours, but others may write in it (mode given).
    WritableByOthers(u32),
    /// Root's, writable by others and not sticky (mode given).
    SharedNotSticky(u32),
    /// Not a socket.
    NotASocket,
    /// The process serving it runs as another user.
    PeerIsUser(u32),
    /// The serving process's user could not be learned.
    PeerUnknown,
    /// Inspecting it failed.
    Io(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::LinkOwnedBy(uid) => {
                write!(f, "is a symbolic link made by another user (uid {uid})")
            }
            Reason::NotADirectory => f.write_str("is not a directory"),
            Reason::OwnedBy(uid) => write!(f, "is owned by another user (uid {uid})"),
            Reason::WritableByOthers(mode) => write!(
                f,
                "is writable by other users (mode {mode:o}; `chmod 700` it, or pick another --socket)"
            ),
            Reason::SharedNotSticky(mode) => write!(
                f,
                "is writable by other users and not sticky (mode {mode:o}), so they could replace the socket"
            ),
            Reason::NotASocket => f.write_str("is not a socket"),
            Reason::PeerIsUser(uid) => {
                write!(f, "is served by a process of another user (uid {uid})")
            }
            Reason::PeerUnknown => f.write_str("the serving process's user cannot be learned"),
            Reason::Io(e) => f.write_str(e),
        }
    }
}

/// The effective user id of this process.
#[cfg(unix)]
pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(unix)]
mod unix {
    use super::{current_uid, Reason, Unsafe};
    use std::fs::Metadata;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    fn refuse(path: &Path, reason: Reason) -> Unsafe {
        Unsafe {
            path: path.to_path_buf(),
            reason,
        }
    }

    fn io(path: &Path, what: &str, e: &std::io::Error) -> Unsafe {
        refuse(path, Reason::Io(format!("cannot {what}: {e}")))
    }

    /// The metadata of `path`, following a symbolic link only if this user or root made it.
    fn trusted_metadata(path: &Path) -> Result<Option<Metadata>, Unsafe> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path, "inspect it", &e)),
        };
        if !meta.file_type().is_symlink() {
            return Ok(Some(meta));
        }
        if meta.uid() != current_uid() && meta.uid() != 0 {
            return Err(refuse(path, Reason::LinkOwnedBy(meta.uid())));
        }
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, "inspect it", &e)),
        }
    }

    /// Ours and writable by nobody else, or root's and sticky (or not writable by others).
    fn check_dir_meta(dir: &Path, meta: &Metadata) -> Result<(), Unsafe> {
        if !meta.is_dir() {
            return Err(refuse(dir, Reason::NotADirectory));
        }
        let mode = meta.mode() & 0o7777;
        let owner = meta.uid();
        if owner != current_uid() && owner != 0 {
            return Err(refuse(dir, Reason::OwnedBy(owner)));
        }
        // Others may write in a sticky directory (a shared /tmp) but not remove or rename our files.
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            let reason = if owner == current_uid() {
                Reason::WritableByOthers(mode)
            } else {
                Reason::SharedNotSticky(mode)
            };
            return Err(refuse(dir, reason));
        }
        Ok(())
    }

    pub(super) fn prepare_socket_dir(dir: &Path) -> Result<(), Unsafe> {
        if trusted_metadata(dir)?.is_none() {
            // `create` does not follow a link planted at the last component: it fails with
            // AlreadyExists, and the check below then judges what is there.
            match std::fs::DirBuilder::new()
                .recursive(false)
                .mode(0o700)
                .create(dir)
            {
                Ok(()) => {
                    // The umask may have taken bits away, never added them; make it exact anyway.
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(|e| io(dir, "restrict it to 0700", &e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Parents missing: make them (0700 too), then this one.
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(|e| io(dir, "create it", &e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(dir, "create it", &e)),
            }
        }
        let meta = trusted_metadata(dir)?.ok_or_else(|| {
            refuse(
                dir,
                Reason::Io("it disappeared while being created".to_owned()),
            )
        })?;
        check_dir_meta(dir, &meta)
    }

    pub(super) fn check_socket(socket: &Path) -> Result<bool, Unsafe> {
        if let Some(dir) = super::parent_of(socket) {
            match trusted_metadata(&dir)? {
                Some(meta) => check_dir_meta(&dir, &meta)?,
                None => return Ok(false),
            }
        }
        let Some(meta) = trusted_metadata(socket)? else {
            return Ok(false);
        };
        if !meta.file_type().is_socket() {
            return Err(refuse(socket, Reason::NotASocket));
        }
        if meta.uid() != current_uid() {
            return Err(refuse(socket, Reason::OwnedBy(meta.uid())));
        }
        Ok(true)
    }
}

/// The directory a socket path lives in (`.` for a bare file name).
pub(crate) fn parent_of(socket: &Path) -> Option<PathBuf> {
    match socket.parent() {
        Some(dir) if dir.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(dir) => Some(dir.to_path_buf()),
        None => None,
    }
}

/// Creates the socket's directory `0700` if it is missing, without following a symbolic link planted
/// at its last component, and refuses a directory another user could write in or owns.
///
/// # Errors
///
/// [`Unsafe`] saying which directory and why.
pub fn prepare_socket_dir(dir: &Path) -> Result<(), Unsafe> {
    #[cfg(unix)]
    return unix::prepare_socket_dir(dir);
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| Unsafe {
        path: dir.to_path_buf(),
        reason: Reason::Io(format!("cannot create it: {e}")),
    })
}

/// Checks, before connecting, that the socket's directory passes [`prepare_socket_dir`]'s rules and
/// that the socket is a socket owned by this user. `Ok(false)` when there is nothing there.
///
/// # Errors
///
/// [`Unsafe`] saying which file or directory and why.
pub fn check_socket(socket: &Path) -> Result<bool, Unsafe> {
    #[cfg(unix)]
    return unix::check_socket(socket);
    #[cfg(not(unix))]
    Ok(socket.exists())
}

/// Checks, after connecting, that the process at the other end runs as this user (`SO_PEERCRED` on
/// Linux, `getpeereid` elsewhere).
///
/// # Errors
///
/// [`Unsafe`] naming the socket, when the peer is another user or cannot be identified.
#[cfg(unix)]
pub(crate) fn check_peer(
    socket: &Path,
    stream: &interprocess::local_socket::tokio::Stream,
) -> Result<(), Unsafe> {
    match peer_uid(stream) {
        Some(uid) if uid == current_uid() => Ok(()),
        Some(uid) => Err(Unsafe {
            path: socket.to_path_buf(),
            reason: Reason::PeerIsUser(uid),
        }),
        None => Err(Unsafe {
            path: socket.to_path_buf(),
            reason: Reason::PeerUnknown,
        }),
    }
}

/// The effective user id of the process at the other end of `stream`.
#[cfg(unix)]
pub(crate) fn peer_uid(stream: &interprocess::local_socket::tokio::Stream) -> Option<u32> {
    use interprocess::local_socket::tokio::prelude::*;
    stream.peer_creds().ok().and_then(|creds| creds.euid())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ipckit-own-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_directory_is_created_0700_with_its_parents() {
        let base = temp("create");
        let dir = base.join("a").join("b");
        prepare_socket_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_shared_directory_is_accepted_only_when_sticky() {
        let dir = temp("sticky");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(prepare_socket_dir(&dir), Ok(()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = prepare_socket_dir(&dir).unwrap_err();
        assert_eq!(refused.reason, Reason::WritableByOthers(0o777));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(
            prepare_socket_dir(&dir).is_err(),
            "group-writable is refused too"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused() {
        let path = temp("file");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(
            prepare_socket_dir(&path).unwrap_err().reason,
            Reason::NotADirectory
        );
        std::fs::remove_file(&path).unwrap();
    }
}
