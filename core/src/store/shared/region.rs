//! The region: one file of fixed size, memory-mapped by every process that opens it, holding a
//! versioned header and the slot table. It never grows: its size is fixed at creation.
//!
//! Creation is race-free and crash-safe: the file is built complete under a temporary name in
//! the same directory (mode 0600, header written, space reserved) and then `link`ed to its
//! final name, which fails if another process got there first. A region visible under its name
//! is therefore always fully initialized; a crash mid-creation leaves at most a temporary file.

use super::slots::{SlotCell, BUCKET};
use crate::{Error, Result};
use portable_atomic::AtomicU128;
use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// "FLUXSHM\0" read as a little-endian u64 (a region of the other byte order fails this too).
pub const MAGIC: u64 = u64::from_le_bytes(*b"FLUXSHM\0");

/// Version of the header and slot layout; a region of another version is refused, never read.
/// 2: keys are hashed alone with a per-limit seed, and buckets chosen by multiply-shift
/// (`store.rs`, `locate`): a process of version 1 would look for keys elsewhere.
pub const LAYOUT_VERSION: u32 = 2;

/// Bytes before the first slot.
pub const HEADER_SIZE: usize = 128;

/// Bytes per slot (the 128-bit word, `used`, `idle_at`): the region's whole cost per key.
pub const SLOT_SIZE: usize = std::mem::size_of::<Slot>();

/// Keys a region holds when the caller does not say: 2.5 MiB of slots.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// Largest `max_keys` accepted (1.25 GiB of slots): beyond that a typo is likelier than a need.
pub const MAX_MAX_KEYS: usize = 1 << 25;

/// The header at offset 0. Fields up to `checksum` are written once at creation and covered by
/// the checksum; the counters after it change while the region is in use.
#[repr(C)]
pub struct Header {
    magic: u64,
    layout: u32,
    slot_size: u32,
    slot_count: u64,
    bucket: u32,
    _pad: u32,
    /// The seed of the key hash: random per region, so that keys colliding can't be chosen.
    seed: [u64; 2],
    checksum: u64,
    /// Live keys evicted (not back at full capacity) to make room for a new key.
    pub evictions: AtomicU64,
}

const CHECKED_BYTES: usize = std::mem::offset_of!(Header, checksum);
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(SLOT_SIZE == 32 && HEADER_SIZE.is_multiple_of(16));

impl Header {
    fn checksum(&self) -> u64 {
        // SAFETY: the header is plain integers; its first CHECKED_BYTES bytes are initialized.
        let bytes = unsafe {
            std::slice::from_raw_parts(self as *const Header as *const u8, CHECKED_BYTES)
        };
        xxhash_rust::xxh3::xxh3_64(bytes)
    }

    /// The seed of the key hash.
    pub fn seed(&self) -> u64 {
        self.seed[0] ^ self.seed[1].rotate_left(32)
    }
}

/// One slot: the 128-bit word (ident, state) that every update CASes, and two hint words.
#[repr(C, align(16))]
pub struct Slot {
    word: AtomicU128,
    used: AtomicU64,
    idle_at: AtomicU64,
}

impl SlotCell for Slot {
    #[inline]
    fn load(&self) -> u128 {
        self.word.load(Ordering::Acquire)
    }
    #[inline]
    fn compare_exchange(&self, current: u128, new: u128) -> std::result::Result<u128, u128> {
        self.word
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }
    #[inline]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
    #[inline]
    fn set_used(&self, now: u64) {
        // Hits come through `touch`, which already skips stores a hot key does not need.
        self.used.store(now, Ordering::Relaxed);
    }
    #[inline]
    fn idle_at(&self) -> u64 {
        self.idle_at.load(Ordering::Acquire)
    }
    #[inline]
    fn set_idle_at(&self, at: u64) {
        self.idle_at.store(at, Ordering::Release);
    }
    #[inline]
    fn raise_idle_at(&self, at: u64) {
        if self.idle_at.load(Ordering::Relaxed) < at {
            self.idle_at.fetch_max(at, Ordering::AcqRel);
        }
    }
}

/// A mapped region.
pub struct Region {
    path: PathBuf,
    base: *mut u8,
    len: usize,
    slot_count: usize,
    /// When this process last logged evictions (process-local: each process logs its own).
    last_eviction_log: AtomicU64,
}

// SAFETY: the mapping is shared memory accessed only through atomics (`Header` counters and
// `Slot`); the pointer stays valid until `Drop` unmaps it.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing borrows them past self.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The size of a region of `slot_count` slots.
fn region_len(slot_count: usize) -> usize {
    HEADER_SIZE + slot_count * SLOT_SIZE
}

/// The slots for `max_keys` keys: a quarter more, in whole buckets. Keys land in buckets at
/// random, so a table of exactly `max_keys` slots would start evicting in its fullest buckets
/// well before it holds `max_keys` keys; the margin keeps that rare (40 bytes per key).
pub fn slot_count_for(max_keys: usize) -> Result<usize> {
    if max_keys == 0 || max_keys > MAX_MAX_KEYS {
        return Err(Error::InvalidArgument(format!(
            "shared store max_keys must be between 1 and {MAX_MAX_KEYS}, got {max_keys}"
        )));
    }
    Ok((max_keys + max_keys.div_ceil(4)).div_ceil(BUCKET) * BUCKET)
}

fn os_error(path: &Path, doing: &str, advice: &str) -> Error {
    let err = std::io::Error::last_os_error();
    Error::Store(format!(
        "shared store at {}: cannot {doing}: {err}; {advice}",
        path.display()
    ))
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::InvalidArgument(format!(
            "shared store path {} contains a NUL byte",
            path.display()
        ))
    })
}

/// Closes a file descriptor when dropped.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this guard.
        unsafe { libc::close(self.0) };
    }
}

fn random_seed() -> [u64; 2] {
    // std's RandomState is seeded from the OS's random source once per process, then varied.
    let mut out = [0u64; 2];
    for (i, word) in out.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        *word = h.finish();
    }
    out
}

impl Region {
    /// Opens the region at `path`, creating it with `max_keys` (rounded up to whole buckets;
    /// None: [`DEFAULT_MAX_KEYS`]) if it does not exist. An existing region is used as it is,
    /// unless `max_keys` was given and differs from its size.
    pub fn open(path: &Path, max_keys: Option<usize>) -> Result<Region> {
        if !AtomicU128::is_lock_free() {
            return Err(Error::Store(format!(
                "shared store at {}: this processor has no lock-free 128-bit compare-and-swap, \
                 which the shared store needs; use the memory or Redis store",
                path.display()
            )));
        }
        let wanted = slot_count_for(max_keys.unwrap_or(DEFAULT_MAX_KEYS))?;
        let cpath = c_path(path)?;
        for _ in 0..8 {
            // SAFETY: a valid C string; the flags refuse a symlink planted at the path.
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            };
            if fd >= 0 {
                let region = Region::map_existing(path, Fd(fd))?;
                if max_keys.is_some() && region.slot_count != wanted {
                    return Err(Error::Store(format!(
                        "shared store at {}: the region has {} slots but max_keys = {} needs \
                         {wanted}: it was created with another max_keys; use the same max_keys \
                         in every process or, once no process uses it, remove the file",
                        path.display(),
                        region.slot_count,
                        max_keys.unwrap_or_default(),
                    )));
                }
                return Ok(region);
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
                return Err(os_error(
                    path,
                    "open the region file",
                    "check the path and that it belongs to this user (the region is created \
                     with mode 0600 for the user who creates it)",
                ));
            }
            if let Some(region) = Region::create(path, wanted)? {
                return Ok(region);
            }
            // Another process created it first: open theirs.
        }
        Err(Error::Store(format!(
            "shared store at {}: the region file keeps appearing and disappearing; is another \
             program removing it?",
            path.display()
        )))
    }

    /// Builds a complete region under a temporary name and links it to `path`; `None` when
    /// `path` appeared meanwhile.
    fn create(path: &Path, slot_count: usize) -> Result<Option<Region>> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let name = path.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "shared store path {} names no file",
                path.display()
            ))
        })?;
        let temp = dir.unwrap_or(Path::new(".")).join(format!(
            ".{}.{}-{:x}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            random_seed()[0]
        ));
        let ctemp = c_path(&temp)?;
        // SAFETY: a valid C string; O_EXCL makes the temporary ours alone.
        let fd = unsafe {
            libc::open(
                ctemp.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(os_error(
                path,
                "create the region file",
                "check that its directory exists and is writable by this user, or choose \
                 another path",
            ));
        }
        let fd = Fd(fd);
        let cleanup = || {
            // SAFETY: a valid C string naming our own temporary file.
            unsafe { libc::unlink(ctemp.as_ptr()) };
        };
        let len = region_len(slot_count);
        if let Err(e) = reserve(fd.0, len, path) {
            cleanup();
            return Err(e);
        }
        let region = match Region::map(path, &fd, len, slot_count) {
            Ok(region) => region,
            Err(e) => {
                cleanup();
                return Err(e);
            }
        };
        // SAFETY: the mapping is ours alone until linked; the header is plain integers.
        let header = unsafe { &mut *(region.base as *mut Header) };
        header.magic = MAGIC;
        header.layout = LAYOUT_VERSION;
        header.slot_size = SLOT_SIZE as u32;
        header.slot_count = slot_count as u64;
        header.bucket = BUCKET as u32;
        header.seed = random_seed();
        header.checksum = header.checksum();
        let cpath = c_path(path)?;
        // SAFETY: valid C strings. link is atomic and fails if `path` exists.
        let linked = unsafe { libc::link(ctemp.as_ptr(), cpath.as_ptr()) };
        let link_error = std::io::Error::last_os_error();
        cleanup();
        if linked == 0 {
            return Ok(Some(region));
        }
        if link_error.raw_os_error() == Some(libc::EEXIST) {
            return Ok(None);
        }
        Err(Error::Store(format!(
            "shared store at {}: cannot create the region file: {link_error}; check that its \
             directory is writable by this user, or choose another path",
            path.display()
        )))
    }

    fn map_existing(path: &Path, fd: Fd) -> Result<Region> {
        // SAFETY: an all-zero stat is a valid value to be overwritten by fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open; st is a valid out-pointer.
        if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
            return Err(os_error(
                path,
                "read the region file's size",
                "check the path",
            ));
        }
        let remove = "once no process uses it, remove the file (a new region is then created)";
        let size = st.st_size as u64;
        if size < HEADER_SIZE as u64 {
            return Err(Error::Store(format!(
                "shared store at {}: the file is {size} bytes, too short for a region header \
                 (truncated, or not a flux region); {remove}",
                path.display()
            )));
        }
        let probe = Region::map(path, &fd, HEADER_SIZE, 0)?;
        let header = probe.header();
        if header.magic != MAGIC {
            return Err(Error::Store(format!(
                "shared store at {}: not a flux shared region (wrong magic number: another \
                 program's file, or corrupted); {remove}",
                path.display()
            )));
        }
        if header.layout != LAYOUT_VERSION || header.slot_size as usize != SLOT_SIZE {
            return Err(Error::Store(format!(
                "shared store at {}: the region has layout version {} (slot size {}), this flux \
                 reads only version {LAYOUT_VERSION} (slot size {SLOT_SIZE}): it was made by \
                 another flux version; stop the processes of that version and remove the file, \
                 or give this one another path",
                path.display(),
                header.layout,
                header.slot_size
            )));
        }
        if header.checksum != header.checksum() || header.bucket as usize != BUCKET {
            return Err(Error::Store(format!(
                "shared store at {}: the region header is corrupted (checksum mismatch); \
                 {remove}",
                path.display()
            )));
        }
        let slot_count = header.slot_count as usize;
        if slot_count == 0
            || slot_count > 2 * MAX_MAX_KEYS
            || !slot_count.is_multiple_of(BUCKET)
            || size != region_len(slot_count) as u64
        {
            return Err(Error::Store(format!(
                "shared store at {}: the file is {size} bytes but its header describes {} slots \
                 ({} bytes): truncated or corrupted; {remove}",
                path.display(),
                header.slot_count,
                region_len(slot_count.min(2 * MAX_MAX_KEYS))
            )));
        }
        drop(probe);
        // A region directory such as /dev/shm is writable by everyone: a file planted there by
        // another user (or opened up to others) could be read or steered by them.
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if st.st_uid != euid || st.st_mode & 0o077 != 0 {
            return Err(Error::Store(format!(
                "shared store at {}: the file belongs to user {} with mode {:o}, but a region \
                 must belong to this user ({euid}) with no access for others (mode 600); \
                 remove it, or choose another path",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777
            )));
        }
        Region::map(path, &fd, region_len(slot_count), slot_count)
    }

    fn map(path: &Path, fd: &Fd, len: usize, slot_count: usize) -> Result<Region> {
        // SAFETY: a fresh shared mapping of an open file; checked for MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.0,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_error(
                path,
                "map the region file into memory",
                "check the memory limits (ulimit -v) and that the file is a regular file",
            ));
        }
        Ok(Region {
            path: path.to_path_buf(),
            base: base as *mut u8,
            len,
            slot_count,
            last_eviction_log: AtomicU64::new(0),
        })
    }

    /// Counts an eviction at `now`, and logs a warning at most once a minute per process.
    pub fn evicted(&self, now: u64) {
        let total = self.header().evictions.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_eviction_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60 * crate::NANOS_PER_SEC
            && self
                .last_eviction_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "flux shared store at {}: evicting the least recently used keys to make room \
                 for new ones ({total} evictions since the region was created): its {} slots \
                 are full of keys in use; raise max_keys (a new region size needs the file \
                 removed once no process uses it)",
                self.path.display(),
                self.slot_count
            );
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a header (validated or written by us) and is aligned
        // to a page.
        unsafe { &*(self.base as *const Header) }
    }

    /// Every slot.
    pub fn slots(&self) -> &[Slot] {
        // SAFETY: slot_count slots of SLOT_SIZE bytes follow the header inside the mapping,
        // 16-byte aligned (page-aligned base + HEADER_SIZE); accessed only through atomics.
        unsafe {
            std::slice::from_raw_parts(self.base.add(HEADER_SIZE) as *const Slot, self.slot_count)
        }
    }

    /// The region file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of slots (the most keys it holds at once).
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }
}

/// Reserves the region's space now, so that a full /dev/shm is an error here rather than a
/// SIGBUS on some later hit.
fn reserve(fd: libc::c_int, len: usize, path: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fd is open for writing.
        let rc = unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        // Filesystems without fallocate: fall back to ftruncate below.
        if rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
            let err = std::io::Error::from_raw_os_error(rc);
            return Err(Error::Store(format!(
                "shared store at {}: cannot reserve {len} bytes for the region: {err}; free \
                 space there (a container's /dev/shm is often 64 MiB: see --shm-size), lower \
                 max_keys, or choose another path",
                path.display()
            )));
        }
    }
    // SAFETY: fd is open for writing.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(os_error(
            path,
            &format!("size the region file to {len} bytes"),
            "free space there, lower max_keys, or choose another path",
        ));
    }
    Ok(())
}

/// The default region path for `name`: /dev/shm on Linux (memory, never disk), the temporary
/// directory elsewhere; the user id is part of the name so users never meet on one file.
pub fn default_path(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let file = format!("flux-{uid}-{safe}");
    let shm = Path::new("/dev/shm");
    if cfg!(target_os = "linux") && shm.is_dir() {
        shm.join(file)
    } else {
        std::env::temp_dir().join(file)
    }
}
