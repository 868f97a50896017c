//! The system calls the store needs that std does not offer: memory maps, preallocation, a whole-file
//! lock, the filesystem's kind, and page-cache advice. Every `unsafe` block of the store is here.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared memory map of the start of a file, unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: AtomicBool,
    /// A private copy in anonymous memory ([`Mapping::copy_of`]), not a map of the file: its pages
    /// are the only copy, never dropped.
    copy: bool,
}

// SAFETY: a Mapping owns its pages as a Box<[u8]> owns its heap memory. Its contents are read
// through `bytes` and `prefix` and written only through `range_mut_unchecked`, whose callers promise
// that nothing else reads or writes that range meanwhile (appends write past the records served;
// readers on other threads read only the records served); `populate`, `seal` and the advices hand
// the range to the kernel without touching a byte.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (which must be at least that long), shared, read-only or
    /// read-write.
    ///
    /// # Safety
    ///
    /// Nobody may truncate the file below `len` or write to it except through this mapping (or, for a
    /// read-only one, through this process's own `pwrite`s) while the mapping lives. The store meets
    /// this by keeping its files in a directory only the user can write to, locked for one process.
    pub unsafe fn new(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping::empty());
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping at an address the kernel picks; the file descriptor is valid.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping {
            ptr,
            len,
            writable: AtomicBool::new(writable),
            copy: false,
        })
    }

    /// A private copy of the first `len` bytes of `file` in anonymous memory, read-only once filled
    /// and unmapped on drop. Unlike a map of the file, it stays valid whatever happens to the file
    /// (another process truncating or writing it): what a read-only open of a data dir another server
    /// holds needs for the segment that server may be writing. Bytes past the file's end are zeros.
    pub fn copy_of(file: &File, len: usize) -> io::Result<Mapping> {
        use std::os::unix::fs::FileExt;
        if len == 0 {
            return Ok(Mapping::empty());
        }
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // Owned from here: an early return unmaps it.
        let mapping = Mapping {
            ptr,
            len,
            writable: AtomicBool::new(false),
            copy: true,
        };
        // SAFETY: `len` bytes mapped readable and writable, reachable only through this borrow until
        // it ends below.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: the range is this mapping's own; on failure the pages stay writable, which only
        // loses the guard (nothing writes them).
        unsafe {
            libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_READ);
        }
        Ok(mapping)
    }

    /// A mapping of nothing.
    pub fn empty() -> Mapping {
        Mapping {
            ptr: NonNull::dangling(),
            len: 0,
            writable: AtomicBool::new(false),
            copy: false,
        }
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable for as long as self lives (dangling and 0 if empty).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The first `len` bytes mapped (all of them if fewer).
    pub fn prefix(&self, len: usize) -> &[u8] {
        // SAFETY: as `bytes`, over a part of the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len.min(self.len)) }
    }

    /// The mapped bytes `start..end`, to write; empty for a read-only mapping or a range outside it.
    ///
    /// # Safety
    ///
    /// While the returned borrow lives, nothing else may read or write those bytes: the data dir's
    /// appends hold `&mut DataDir` and write only past the records served, and readers (a borrowed
    /// [`Records`](super::Records) or a [`Cursor`](super::Cursor) on another thread) read only the
    /// records served when they were made; the background thread never touches the bytes.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut_unchecked(&self, start: usize, end: usize) -> &mut [u8] {
        if !self.writable.load(Ordering::Relaxed) || start > end || end > self.len {
            return &mut [];
        }
        // SAFETY: a writable mapping holding `start..end`; exclusive access to that range is the
        // caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), end - start) }
    }

    /// How many bytes are mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Makes the mapping read-only (a sealed segment is never written again).
    pub fn seal(&self) {
        if self.writable.swap(false, Ordering::Relaxed) && self.len > 0 {
            // SAFETY: the range is this mapping's own. On failure the pages stay writable; nothing
            // writes them any more (range_mut_unchecked now gives nothing), so only the guard is lost.
            unsafe {
                libc::mprotect(self.ptr.as_ptr().cast(), self.len, libc::PROT_READ);
            }
        }
    }

    /// Faults in the pages of `start..start + len` (clamped to the mapping): for writing (which
    /// needs a writable mapping) or for reading. Only a hint: it changes no byte, errors are ignored
    /// (kernels before 5.14 answer EINVAL).
    pub fn populate(&self, start: usize, len: usize, write: bool) {
        #[cfg(target_os = "linux")]
        if start < self.len && (!write || self.writable.load(Ordering::Relaxed)) {
            let page = page_size();
            let aligned = start / page * page;
            let end = start.saturating_add(len).min(self.len);
            let advice = if write {
                libc::MADV_POPULATE_WRITE
            } else {
                libc::MADV_POPULATE_READ
            };
            // SAFETY: the range lies inside this mapping; populating neither changes the contents
            // nor unmaps anything, and a page it cannot fault in is an error, not a signal.
            unsafe {
                libc::madvise(self.ptr.as_ptr().add(aligned).cast(), end - aligned, advice);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (start, len, write);
    }

    /// Tells the kernel the mapping is about to be read front to back once (more read-ahead).
    pub fn advise_sequential(&self) {
        self.advise(libc::MADV_SEQUENTIAL);
    }

    /// Drops this process's page-table entries for the mapping (the page cache keeps the data, and a
    /// later read faults it back in), so scanned segments do not count as resident memory.
    pub fn release_pages(&self) {
        // On a private copy that would zero the pages: they are the data.
        if !self.copy {
            self.advise(libc::MADV_DONTNEED);
        }
    }

    /// As [`Mapping::release_pages`], for the whole pages of `..end` only (the page `end` falls in
    /// is left alone: appends may be filling it).
    pub fn release_before(&self, end: usize) {
        let end = end.min(self.len) / page_size() * page_size();
        if end > 0 {
            // SAFETY: the start of this mapping; on a shared file mapping the advice loses no data.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), end, libc::MADV_DONTNEED);
            }
        }
    }

    fn advise(&self, advice: libc::c_int) {
        if self.len > 0 {
            // SAFETY: the whole mapping; on a shared file mapping these advices lose no data.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), self.len, advice);
            }
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping our own mapping once; no borrow of it outlives self.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("len", &self.len)
            .field("writable", &self.writable.load(Ordering::Relaxed))
            .finish()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// Whether the space a preallocation asked for is now the file's, or the file was only sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Preallocated {
    /// The filesystem reserved the blocks: writes into them cannot run out of space.
    Reserved,
    /// The filesystem cannot preallocate: the file has its length but writes may still find the disk full.
    SizedOnly,
}

/// Gives `file` `len` bytes of disk space (zeros), so a full disk is an error here rather than later.
pub(super) fn preallocate(file: &File, len: u64) -> io::Result<Preallocated> {
    #[cfg(target_os = "linux")]
    {
        let off = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        loop {
            // SAFETY: a valid descriptor; posix_fallocate returns an error number, it does not set errno.
            let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off) };
            match rc {
                0 => return Ok(Preallocated::Reserved),
                libc::EINTR => continue,
                libc::EOPNOTSUPP | libc::EINVAL => break,
                _ => return Err(io::Error::from_raw_os_error(rc)),
            }
        }
    }
    file.set_len(len)?;
    Ok(Preallocated::SizedOnly)
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` if another open file holds it.
pub(super) fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: a valid descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Whether another open file holds an exclusive `flock` on `file`: probed with a shared lock that is
/// released at once (a writer trying to lock in that instant is refused, as if held).
pub(super) fn is_locked(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: a valid descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
        if rc == 0 {
            // SAFETY: a valid descriptor; unlocking what this call just locked.
            unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_UN);
            }
            return Ok(false);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(true),
            _ => return Err(err),
        }
    }
}

/// Whether `file` lives on a copy-on-write filesystem (btrfs, ZFS, bcachefs), where a write into a
/// preallocated, memory-mapped page can still need new space and fail with SIGBUS on a full disk.
pub(super) fn copy_on_write_fs(file: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        const BTRFS: i64 = 0x9123_683e;
        const ZFS: i64 = 0x2fc1_2fc1;
        const BCACHEFS: i64 = 0xca45_1a4e;
        let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: a valid descriptor and a buffer of the right type for the kernel to fill.
        let rc = unsafe { libc::fstatfs(file.as_raw_fd(), stat.as_mut_ptr()) };
        if rc != 0 {
            return false;
        }
        // SAFETY: fstatfs succeeded, so it filled the buffer.
        #[allow(clippy::unnecessary_cast)] // f_type is i64 on some targets, u32 or i32 on others.
        let kind = unsafe { stat.assume_init() }.f_type as i64;
        [BTRFS, ZFS, BCACHEFS].contains(&kind)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}

/// The effective user id of this process.
pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
