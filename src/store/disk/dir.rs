//! The data dir itself: its safety checks, its lock, its FORMAT file and the listing of its segments.

use super::format::FORMAT_VERSION;
use super::{sys, DiskError};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name.
pub(super) const LOCK_FILE: &str = "LOCK";
/// The format file's name.
pub(super) const FORMAT_FILE: &str = "FORMAT";
/// The format file's first line.
const FORMAT_TITLE: &str = "ipckit data dir";
/// A segment file's suffix; its name is its base id in 20 digits.
const SEGMENT_SUFFIX: &str = ".seg";
/// What a segment being created is called until it is complete.
const TEMP_SUFFIX: &str = ".seg.tmp";

/// Creates `path` (mode 0700) if it is absent and checks that it is safe to keep events in: a real
/// directory, not a symbolic link, owned by this user, writable by nobody else.
pub(super) fn prepare(path: &Path) -> Result<(), DiskError> {
    let unsafe_dir = |reason: String| DiskError::UnsafeDirectory {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(unsafe_dir(
                "it is a symbolic link; give the directory it points to".into(),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(DiskError::io(format!("cannot create {}", parent.display())))?;
            }
            // Not recursive: mkdir does not follow a symbolic link planted at the last component.
            match std::fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(DiskError::io(format!("cannot create {}", path.display()))(
                        e,
                    ))
                }
            }
        }
        Err(e) => {
            return Err(DiskError::io(format!("cannot inspect {}", path.display()))(
                e,
            ))
        }
    }
    check_safe(path)
}

/// Checks that the existing `path` is safe to keep (or read) events in: a real directory, not a
/// symbolic link, owned by this user, writable by nobody else.
pub(super) fn check_safe(path: &Path) -> Result<(), DiskError> {
    let unsafe_dir = |reason: String| DiskError::UnsafeDirectory {
        path: path.to_path_buf(),
        reason,
    };
    // Inspect what was opened, not the name, so nothing can be swapped in between.
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                unsafe_dir("it is a symbolic link; give the directory it points to".into())
            }
            Some(libc::ENOTDIR) => unsafe_dir("it is not a directory".into()),
            _ => DiskError::io(format!("cannot open {}", path.display()))(e),
        })?;
    let meta = dir
        .metadata()
        .map_err(DiskError::io(format!("cannot inspect {}", path.display())))?;
    let uid = sys::current_uid();
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by this user (uid {uid})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "others can write to it (mode {mode:o}); `chmod go-w` it or give another directory"
        )));
    }
    Ok(())
}

/// The data dir's exclusive lock: a `flock` on its LOCK file, held while this value lives.
#[derive(Debug)]
pub(super) struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock, writing this process's id into the file; refuses if another holds it.
    pub fn acquire(path: &Path) -> Result<Lock, DiskError> {
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(DiskError::io(format!(
                "cannot open {}",
                lock_path.display()
            )))?;
        let locked = sys::try_lock(&file).map_err(DiskError::io(format!(
            "cannot lock {}",
            lock_path.display()
        )))?;
        if !locked {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok());
            return Err(DiskError::Locked {
                path: path.to_path_buf(),
                pid,
            });
        }
        let write_pid = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write_pid(&mut file).map_err(DiskError::io(format!(
            "cannot write {}",
            lock_path.display()
        )))?;
        Ok(Lock { _file: file })
    }
}

/// Whether another process holds the data dir's lock, and its pid if the lock file says: `None` when
/// nobody holds it. Takes no lock (a shared one, probed and released at once).
pub(super) fn holder(path: &Path) -> Result<Option<Option<u32>>, DiskError> {
    let lock_path = path.join(LOCK_FILE);
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DiskError::io(format!(
                "cannot open {}",
                lock_path.display()
            ))(e))
        }
    };
    let held = sys::is_locked(&file).map_err(DiskError::io(format!(
        "cannot probe the lock of {}",
        lock_path.display()
    )))?;
    if !held {
        return Ok(None);
    }
    let mut text = String::new();
    let pid = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    Ok(Some(pid))
}

/// Reads the FORMAT file: `Ok(true)` if there is none and the directory holds nothing else (a new data
/// dir), `Ok(false)` for a data dir of this format; refuses one of another format and a directory
/// that has files but no FORMAT file (not a data dir: nothing is written into it).
pub(super) fn check_format(path: &Path) -> Result<bool, DiskError> {
    let format_path = path.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&format_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let entries = std::fs::read_dir(path)
                .map_err(DiskError::io(format!("cannot list {}", path.display())))?;
            for entry in entries {
                let entry =
                    entry.map_err(DiskError::io(format!("cannot list {}", path.display())))?;
                if entry.file_name() != LOCK_FILE {
                    return Err(DiskError::NotADataDir {
                        path: path.to_path_buf(),
                        found: entry.file_name().to_string_lossy().into_owned(),
                    });
                }
            }
            return Ok(true);
        }
        Err(e) => {
            return Err(DiskError::io(format!(
                "cannot read {}",
                format_path.display()
            ))(e))
        }
    };
    let mut lines = text.lines();
    let version = match (lines.next(), lines.next()) {
        (Some(FORMAT_TITLE), Some(line)) => line.strip_prefix("format ").map(str::trim),
        _ => None,
    };
    match version {
        Some(v) if v == FORMAT_VERSION.to_string() => Ok(false),
        Some(v) => Err(DiskError::Version {
            path: path.to_path_buf(),
            found: v.to_owned(),
        }),
        None => Err(DiskError::NotADataDir {
            path: path.to_path_buf(),
            found: format!("{FORMAT_FILE} (not an ipckit format file)"),
        }),
    }
}

/// Writes the FORMAT file of a new data dir (through a temporary name, so it is whole or absent).
pub(super) fn write_format(path: &Path) -> Result<(), DiskError> {
    let format_path = path.join(FORMAT_FILE);
    let temp = path.join(format!("{FORMAT_FILE}.tmp"));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        write!(file, "{FORMAT_TITLE}\nformat {FORMAT_VERSION}\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, &format_path)?;
        sync_dir(path)
    };
    write().map_err(DiskError::io(format!(
        "cannot write {}",
        format_path.display()
    )))
}

/// The segment files of a data dir, oldest first, and leftovers of segments whose creation was cut short.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// (base id, path), sorted by base id.
    pub segments: Vec<(u64, PathBuf)>,
    /// Segments being created when a process stopped.
    pub temporaries: Vec<PathBuf>,
}

/// Lists `path`'s segments. Names that are not `<20 digits>.seg` are left alone.
pub(super) fn list(path: &Path) -> Result<Listing, DiskError> {
    let mut listing = Listing::default();
    let entries = std::fs::read_dir(path)
        .map_err(DiskError::io(format!("cannot list {}", path.display())))?;
    for entry in entries {
        let entry = entry.map_err(DiskError::io(format!("cannot list {}", path.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMP_SUFFIX) {
            listing.temporaries.push(entry.path());
        } else if let Some(base) = name.strip_suffix(SEGMENT_SUFFIX).and_then(parse_base) {
            listing.segments.push((base, entry.path()));
        }
    }
    listing.segments.sort_unstable();
    Ok(listing)
}

fn parse_base(digits: &str) -> Option<u64> {
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The file name of the segment whose first record has id `base`, and its name while being created.
pub(super) fn segment_names(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}{SEGMENT_SUFFIX}")),
        dir.join(format!("{base:020}{TEMP_SUFFIX}")),
    )
}

/// Makes the directory's entries (files created, renamed or removed) durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_id_and_parse_back() {
        let (name, temp) = segment_names(Path::new("/d"), 42);
        assert_eq!(name, Path::new("/d/00000000000000000042.seg"));
        assert_eq!(temp, Path::new("/d/00000000000000000042.seg.tmp"));
        assert_eq!(parse_base("00000000000000000042"), Some(42));
        assert_eq!(parse_base("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_base("99999999999999999999"), None);
        assert_eq!(parse_base("42"), None);
        assert_eq!(parse_base("0000000000000000004x"), None);
    }
}
