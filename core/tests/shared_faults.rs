//! The shared store's faults: a region of another layout or version, a truncated or corrupted
//! file, a path that cannot be created or mapped. Each is a clear error naming the path and
//! what to do; none crashes or gives a wrong decision.

mod support;

use flux_core::store::shared::SharedRegion;
use flux_core::{Error, Limiter, Quota, NANOS_PER_SEC};
use std::io::{Seek, SeekFrom, Write};
use support::rng::Rng;
use support::shared::ScratchPath;

const HOUR: u64 = 3600 * NANOS_PER_SEC;

/// The error of opening `path`, checked to name the path.
fn open_error(path: &std::path::Path, max_keys: Option<usize>) -> String {
    let err = match SharedRegion::open(path, max_keys) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "the error names the path: {message}"
    );
    message
}

/// Overwrites `bytes` at `offset` of the file at `path`.
fn patch(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

fn created(tag: &str) -> ScratchPath {
    let scratch = ScratchPath::new(tag);
    drop(SharedRegion::open(scratch.path(), Some(64)).unwrap());
    scratch
}

#[test]
fn a_region_of_another_layout_version_is_refused() {
    let scratch = created("version");
    patch(scratch.path(), 8, &99u32.to_le_bytes());
    let message = open_error(scratch.path(), None);
    assert!(message.contains("layout version 99"), "{message}");
    assert!(message.contains("another flux version"), "{message}");
}

#[test]
fn another_programs_file_is_refused() {
    let scratch = ScratchPath::new("magic");
    std::fs::write(scratch.path(), vec![7u8; 4096]).unwrap();
    let message = open_error(scratch.path(), None);
    assert!(message.contains("not a flux shared region"), "{message}");
    assert!(message.contains("remove the file"), "{message}");
}

#[test]
fn a_truncated_region_is_refused() {
    let scratch = created("truncated");
    let len = std::fs::metadata(scratch.path()).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(scratch.path())
        .unwrap();
    file.set_len(len / 2).unwrap();
    let message = open_error(scratch.path(), None);
    assert!(message.contains("truncated"), "{message}");
    file.set_len(10).unwrap();
    let message = open_error(scratch.path(), None);
    assert!(message.contains("too short"), "{message}");
    file.set_len(0).unwrap();
    open_error(scratch.path(), None);
}

#[test]
fn a_region_open_to_other_users_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = created("mode");
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let message = open_error(scratch.path(), None);
    assert!(
        message.contains("mode 644") && message.contains("mode 600"),
        "{message}"
    );
}

#[test]
fn a_corrupted_header_is_refused() {
    let scratch = created("corrupted");
    // The slot count (offset 16): the checksum no longer matches.
    patch(scratch.path(), 16, &1_000_000u64.to_le_bytes());
    let message = open_error(scratch.path(), None);
    assert!(message.contains("corrupted"), "{message}");
}

#[test]
fn a_region_of_another_size_than_asked_is_refused() {
    let scratch = created("size");
    let message = open_error(scratch.path(), Some(100_000));
    assert!(message.contains("max_keys"), "{message}");
    // Without max_keys the region is used at its size.
    assert_eq!(
        SharedRegion::open(scratch.path(), None)
            .unwrap()
            .stats()
            .slots,
        80
    );
}

#[test]
fn paths_that_cannot_be_created_or_mapped_are_clear_errors() {
    let missing = std::env::temp_dir()
        .join(format!("flux-no-such-dir-{}", std::process::id()))
        .join("region");
    let message = open_error(&missing, None);
    assert!(message.contains("cannot create"), "{message}");

    let dir = ScratchPath::new("dir");
    std::fs::create_dir(dir.path()).unwrap();
    let message = open_error(dir.path(), None);
    assert!(message.contains("cannot open"), "{message}");
    std::fs::remove_dir(dir.path()).unwrap();

    // A symlink planted at the path (in a shared directory such as /dev/shm) is not followed.
    let target = created("target");
    let link = ScratchPath::new("link");
    std::os::unix::fs::symlink(target.path(), link.path()).unwrap();
    open_error(link.path(), None);

    // /dev/null opens but cannot be a region.
    let message = open_error(std::path::Path::new("/dev/null"), None);
    assert!(message.contains("too short"), "{message}");

    match SharedRegion::open(ScratchPath::new("zero").path(), Some(0)) {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("max_keys"), "{message}"),
        other => panic!("expected an invalid argument, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn garbage_in_the_slot_table_never_crashes_nor_admits_twice() {
    let scratch = created("garbage");
    let len = std::fs::metadata(scratch.path()).unwrap().len();
    let mut rng = Rng(0x5eed);
    let garbage: Vec<u8> = (0..len - 128).map(|_| rng.next() as u8).collect();
    patch(scratch.path(), 128, &garbage);
    let region = SharedRegion::open(scratch.path(), None).unwrap();
    let limiter = Limiter::builder(Quota::new(1, HOUR, None).unwrap())
        .build_shared(&region)
        .unwrap();
    for i in 0..40 {
        let key = format!("key-{i}");
        assert!(limiter.hit(&key, 1).unwrap().allowed, "{key}");
        assert!(!limiter.hit(&key, 1).unwrap().allowed, "{key}");
    }
    limiter.store().sweep();
    region.stats();
}

/// The child side of `a_full_filesystem_is_a_clear_error_at_open`: does nothing in a normal run.
#[test]
fn child_with_a_small_file_size_limit() {
    let Ok(path) = std::env::var("FLUX_SHARED_FULL_PATH") else {
        return;
    };
    // A file-size limit makes reserving the region fail as a full /dev/shm does (EFBIG
    // instead of ENOSPC, through the same path); SIGXFSZ would kill the process instead.
    // SAFETY: plain libc calls on this process alone.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: 64 * 1024,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let message = match SharedRegion::open(&path, Some(100_000)) {
        Ok(_) => panic!("a region larger than the limit opened"),
        Err(err) => err.to_string(),
    };
    println!("flux-error {message}");
    std::process::exit(0);
}

#[test]
fn a_full_filesystem_is_a_clear_error_at_open() {
    let scratch = ScratchPath::new("full");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_with_a_small_file_size_limit",
            "--nocapture",
        ])
        .env("FLUX_SHARED_FULL_PATH", scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let message = stdout
        .split("flux-error ")
        .nth(1)
        .unwrap_or_else(|| panic!("no error reported: {stdout}"));
    assert!(
        message.contains(&scratch.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("cannot reserve"), "{message}");
    assert!(message.contains("lower max_keys"), "{message}");
    assert!(!scratch.path().exists(), "nothing is left at the path");
}
