//! Tests of the upload effect sequences against real directories.

use std::io::Write as _;

use nodegate_core::file_fault::FileFault;
use nodegate_core::keys::{Target, resolve_key};
use nodegate_core::upload::{self, Discard, Entry, Sha256};

use super::*;
use crate::FILE_MODE;

fn setup() -> (tempfile::TempDir, RootDir, Target) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = RootDir::open_or_create(&tmp.path().join("models")).expect("root");
    let target = resolve_key(b"models/llama/model.gguf").expect("a valid key");
    std::fs::create_dir_all(tmp.path().join("models/llama")).expect("parent");
    (tmp, dir, target)
}

fn write(dir: &RootDir, rel: &str, bytes: &[u8]) {
    let mut file = dir.create_new(rel, FILE_MODE).expect("create");
    file.write_all(bytes).expect("write");
}

fn exists(dir: &RootDir, rel: &str) -> bool {
    !matches!(dir.stat(rel).expect("stat"), EntryInfo::Missing)
}

#[test]
fn the_state_of_a_key_with_nothing_on_disk_is_empty() {
    let (_tmp, dir, target) = setup();
    let state = read_state(&dir, &target).expect("state");
    assert_eq!(state.entry, Entry::Missing);
    assert_eq!(state.sidecar, None);
    assert_eq!(state.partial, None);
    assert_eq!(state.target, None);
    assert_eq!(state.total, None);
}

#[test]
fn the_state_carries_the_file_its_sidecars_and_the_partial() {
    let (_tmp, dir, target) = setup();
    write(&dir, target.rel(), b"weights");
    write(&dir, &target.sidecar(), b"abc");
    write(&dir, &target.partial(), b"half");
    write(&dir, &target.target_sidecar(), b"def");
    write(&dir, &upload::total_sidecar(&target), b"8");
    let state = read_state(&dir, &target).expect("state");
    assert!(matches!(state.entry, Entry::File { size: 7, .. }));
    assert_eq!(
        state.sidecar.map(|sidecar| sidecar.content),
        Some(b"abc".to_vec())
    );
    assert_eq!(state.partial, Some(4));
    assert_eq!(state.target, Some(b"def".to_vec()));
    assert_eq!(state.total, Some(b"8".to_vec()));
}

#[test]
fn an_oversized_hash_sidecar_is_none_and_oversized_in_progress_sidecars_read_as_empty() {
    let (_tmp, dir, target) = setup();
    let big = vec![b'0'; SIDECAR_MAX + 1];
    write(&dir, &target.sidecar(), &big);
    write(&dir, &target.target_sidecar(), &big);
    write(&dir, &upload::total_sidecar(&target), &big);
    let state = read_state(&dir, &target).expect("state");
    assert_eq!(state.sidecar, None);
    assert_eq!(state.target, Some(Vec::new()));
    assert_eq!(state.total, Some(Vec::new()));
}

#[test]
fn a_directory_is_a_directory_entry_and_a_fifo_is_not_a_file() {
    let (tmp, dir, target) = setup();
    std::fs::create_dir(tmp.path().join("models/llama/model.gguf")).expect("mkdir");
    assert_eq!(
        read_state(&dir, &target).expect("state").entry,
        Entry::Directory
    );
    let fifo = resolve_key(b"models/llama/pipe").expect("a valid key");
    let status = std::process::Command::new("mkfifo")
        .arg(tmp.path().join("models/llama/pipe"))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    assert!(matches!(read_state(&dir, &fifo), Err(StoreError::NotAFile)));
}

#[test]
fn hashing_reports_the_digest_and_the_size_before_reading() {
    let (_tmp, dir, target) = setup();
    write(&dir, target.rel(), b"GGUF model bytes");
    let (hash, size, _) = hash_file(&dir, target.rel()).expect("hash");
    assert_eq!(hash, Sha256::of(b"GGUF model bytes"));
    assert_eq!(size, 16);
    assert!(matches!(
        hash_file(&dir, "llama/missing"),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn hash_and_cache_writes_a_sidecar_the_core_trusts() {
    let (_tmp, dir, target) = setup();
    write(&dir, target.rel(), b"weights");
    let hashed = hash_and_cache(&dir, &target)
        .expect("hash")
        .expect("the file did not change");
    assert!(hashed.unsaved.is_none());
    let expected = Sha256::of(b"weights").to_hex().into_bytes();
    assert_eq!(hashed.sidecar.content, expected);
    let state = read_state(&dir, &target).expect("state");
    let written = state.sidecar.as_ref().map(|sidecar| &sidecar.content);
    assert_eq!(written, Some(&expected));
    assert_eq!(state.complete_hash(), Some(Sha256::of(b"weights")));
}

#[test]
fn publishing_renames_writes_the_new_sidecar_and_clears_the_upload_state() {
    let (_tmp, dir, target) = setup();
    write(&dir, target.rel(), b"old");
    write(&dir, &target.sidecar(), b"stale");
    write(&dir, &target.partial(), b"half");
    write(&dir, &target.target_sidecar(), b"t");
    write(&dir, &upload::total_sidecar(&target), b"9");
    let temp = target.temp(7);
    write(&dir, &temp, b"new bytes");
    let sha = Sha256::of(b"new bytes");
    let unsaved = publish(&dir, &target, &temp, sha, true).expect("publish");
    assert!(unsaved.is_none());
    assert!(!exists(&dir, &temp));
    assert!(!exists(&dir, &target.partial()));
    assert!(!exists(&dir, &target.target_sidecar()));
    assert!(!exists(&dir, &upload::total_sidecar(&target)));
    let state = read_state(&dir, &target).expect("state");
    assert!(matches!(state.entry, Entry::File { size: 9, .. }));
    assert_eq!(state.complete_hash(), Some(sha));
}

#[test]
fn publishing_a_partial_keeps_nothing_of_it_and_a_full_upload_may_leave_it() {
    let (_tmp, dir, target) = setup();
    write(&dir, &target.partial(), b"all of it");
    let sha = Sha256::of(b"all of it");
    let unsaved = publish(&dir, &target, &target.partial(), sha, false).expect("publish");
    assert!(unsaved.is_none());
    assert!(!exists(&dir, &target.partial()));
    // A full upload that does not supersede leaves another partial alone.
    write(&dir, &target.partial(), b"resumed");
    let temp = target.temp(1);
    write(&dir, &temp, b"full");
    let unsaved = publish(&dir, &target, &temp, Sha256::of(b"full"), false).expect("publish");
    assert!(unsaved.is_none());
    assert!(exists(&dir, &target.partial()));
}

#[test]
fn publishing_over_a_directory_is_refused_and_moves_nothing() {
    let (tmp, dir, target) = setup();
    std::fs::create_dir(tmp.path().join("models/llama/model.gguf")).expect("mkdir");
    let temp = target.temp(3);
    write(&dir, &temp, b"bytes");
    let refused = publish(&dir, &target, &temp, Sha256::of(b"bytes"), true);
    assert!(matches!(refused, Err(StoreError::IsADirectory)));
    assert!(exists(&dir, &temp));
}

#[test]
fn discarding_removes_what_the_core_names_and_never_the_file() {
    let (_tmp, dir, target) = setup();
    let all = |dir: &RootDir| {
        write(dir, &target.partial(), b"half");
        write(dir, &target.target_sidecar(), b"t");
        write(dir, &upload::total_sidecar(&target), b"9");
    };
    write(&dir, target.rel(), b"complete");
    all(&dir);
    discard(&dir, &target, Discard::NOTHING).expect("nothing");
    assert!(exists(&dir, &target.partial()));
    let partial_only = Discard {
        partial: true,
        target: false,
    };
    discard(&dir, &target, partial_only).expect("partial");
    assert!(!exists(&dir, &target.partial()));
    assert!(!exists(&dir, &upload::total_sidecar(&target)));
    assert!(exists(&dir, &target.target_sidecar()));
    discard(&dir, &target, Discard::IN_PROGRESS).expect("the rest, twice is fine");
    assert!(!exists(&dir, &target.target_sidecar()));
    assert!(exists(&dir, target.rel()));
}

#[test]
fn a_chunk_begins_with_its_sidecars_and_reports_the_current_partial_size() {
    let (_tmp, dir, target) = setup();
    let sha = Sha256::of(b"whole");
    let (mut file, current) = begin_append(&dir, &target, Some(sha), Some(5)).expect("begin");
    assert_eq!(current, 0);
    file.write_all(b"wh").expect("append");
    drop(file);
    let (_, current) = begin_append(&dir, &target, None, None).expect("resume");
    assert_eq!(current, 2);
    let state = read_state(&dir, &target).expect("state");
    assert_eq!(state.target_hash(), Some(sha));
    assert_eq!(state.partial_total(), Some(5));
}

#[test]
fn every_store_error_has_the_fault_the_core_answers_for() {
    let cases = [
        (StoreError::NotFound, FileFault::NotFound),
        (StoreError::Escape, FileFault::Escape),
        (StoreError::IsADirectory, FileFault::IsADirectory),
        (StoreError::NotADirectory, FileFault::NotADirectory),
        (StoreError::NotAFile, FileFault::NotAFile),
        (StoreError::NameTooLong, FileFault::NameTooLong),
        (StoreError::NoSpace, FileFault::NoSpace),
        (StoreError::FileTooLarge, FileFault::FileTooLarge),
        (StoreError::AlreadyExists, FileFault::Internal),
        (StoreError::TooLarge, FileFault::Internal),
        (
            StoreError::Io(std::io::Error::other("hardware")),
            FileFault::Internal,
        ),
    ];
    for (error, fault) in cases {
        assert_eq!(error.fault(), fault, "{error:?}");
    }
}

#[test]
fn an_escaping_sidecar_makes_the_whole_state_unreadable() {
    let (tmp, dir, target) = setup();
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"secret").expect("outside file");
    std::os::unix::fs::symlink(
        &outside,
        tmp.path().join("models/llama/model.gguf.sha256.target"),
    )
    .expect("symlink");
    let unreadable = read_state(&dir, &target);
    assert!(
        matches!(unreadable, Err(StoreError::Escape)),
        "{unreadable:?}"
    );
}
