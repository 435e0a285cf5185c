//! [`RootDir::stamps`]: what the core's state cache (`nodegate_core::state_cache`) checks a
//! kept state against, in three `statx` calls (four more system calls for a key below a
//! subdirectory: the directory's open and close).

use nodegate_core::keys::Target;
use nodegate_core::state_cache::Stamps;

use crate::RootDir;

impl RootDir {
    /// The stamps of `target`'s directory, entry and hash sidecar, none of them followed if
    /// it is a symbolic link. `None` when they cannot be taken (the directory is missing or
    /// not reachable beneath the root, a `statx` failed other than with "not found", or the
    /// platform has no `openat2`/`statx`): the caller then reads the state in full, which
    /// reports the problem.
    #[must_use]
    pub fn stamps(&self, target: &Target) -> Option<Stamps> {
        #[cfg(target_os = "linux")]
        {
            linux::stamps(self, target)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = target;
            None
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, BorrowedFd};

    use nodegate_core::keys::Target;
    use nodegate_core::state_cache::{Stamp, StampKind, Stamps};
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Statx, StatxFlags};
    use rustix::io::Errno;

    use crate::RootDir;

    pub(super) fn stamps(root: &RootDir, target: &Target) -> Option<Stamps> {
        match target.parent() {
            None => taken(root.dir.as_fd(), target),
            Some(parent) => {
                // The same resolution cap-std uses for every open beneath the root: links
                // inside the root are followed, none out of it, no magic links.
                let dir = rustix::fs::openat2(
                    root.dir.as_fd(),
                    parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                )
                .ok()?;
                taken(dir.as_fd(), target)
            }
        }
    }

    fn taken(dir: BorrowedFd<'_>, target: &Target) -> Option<Stamps> {
        let name = target.file_name();
        Some(Stamps {
            dir: stamp(dir, "", AtFlags::EMPTY_PATH).ok()??,
            entry: stamp(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?,
            sidecar: stamp(
                dir,
                &format!("{name}{}", nodegate_core::keys::SIDECAR_SUFFIX),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .ok()?,
        })
    }

    /// `Ok(None)` for a name that does not exist. `AT_STATX_FORCE_SYNC` makes a network
    /// filesystem revalidate instead of answering from its attribute cache, as an open would.
    fn stamp(dir: BorrowedFd<'_>, name: &str, flags: AtFlags) -> Result<Option<Stamp>, Errno> {
        match rustix::fs::statx(
            dir,
            name,
            flags | AtFlags::STATX_FORCE_SYNC,
            StatxFlags::TYPE
                | StatxFlags::MODE
                | StatxFlags::INO
                | StatxFlags::SIZE
                | StatxFlags::MTIME
                | StatxFlags::CTIME,
        ) {
            Ok(statx) => Ok(Some(from_statx(&statx))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(errno),
        }
    }

    fn from_statx(statx: &Statx) -> Stamp {
        let kind = match FileType::from_raw_mode(u32::from(statx.stx_mode)) {
            FileType::RegularFile => StampKind::File,
            FileType::Directory => StampKind::Directory,
            FileType::Symlink => StampKind::Link,
            _ => StampKind::Other,
        };
        let ns = |t: rustix::fs::StatxTimestamp| {
            i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
        };
        Stamp {
            kind,
            dev: (u64::from(statx.stx_dev_major) << 32) | u64::from(statx.stx_dev_minor),
            ino: statx.stx_ino,
            mode: u32::from(statx.stx_mode),
            size: statx.stx_size,
            mtime_ns: ns(statx.stx_mtime),
            ctime_ns: ns(statx.stx_ctime),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::fs::symlink;

    use nodegate_core::keys::resolve_key;
    use nodegate_core::state_cache::StampKind;

    use super::*;

    fn setup() -> (tempfile::TempDir, RootDir) {
        let tmp = tempfile::tempdir().unwrap();
        let root = RootDir::open_or_create(&tmp.path().join("models")).unwrap();
        (tmp, root)
    }

    fn target(key: &str) -> Target {
        resolve_key(key.as_bytes()).unwrap()
    }

    /// Lets the coarse filesystem clock (one kernel tick) move on, so a change is stamped
    /// differently from what was stamped before it (the cache's settle window covers this in
    /// use).
    fn tick() {
        std::thread::sleep(std::time::Duration::from_millis(30));
    }

    #[test]
    fn stamps_describe_the_directory_the_entry_and_the_sidecar() {
        let (_tmp, root) = setup();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        for (key, rel) in [("models/w.bin", "w.bin"), ("models/sub/w.bin", "sub/w.bin")] {
            let t = target(key);
            let none = root.stamps(&t).unwrap();
            assert_eq!(none.dir.kind, StampKind::Directory);
            assert_eq!((none.entry, none.sidecar), (None, None));

            tick();
            std::fs::write(root.path().join(rel), b"12345").unwrap();
            let file = root.stamps(&t).unwrap();
            let entry = file.entry.unwrap();
            assert_eq!((entry.kind, entry.size), (StampKind::File, 5));
            assert_ne!(
                file.dir, none.dir,
                "a new entry changes the directory's stamp"
            );
            match root.stat(rel).unwrap() {
                crate::EntryInfo::File { mtime_ns, .. } => assert_eq!(mtime_ns, entry.mtime_ns),
                other => panic!("{other:?}"),
            }

            std::fs::write(root.path().join(format!("{rel}.sha256")), b"x").unwrap();
            let with_sidecar = root.stamps(&t).unwrap();
            assert_eq!(with_sidecar.sidecar.unwrap().kind, StampKind::File);

            // An upload's partial beside it shows in the directory's stamp only.
            let partial = root.path().join(t.partial());
            tick();
            std::fs::write(&partial, b"").unwrap();
            let uploading = root.stamps(&t).unwrap();
            assert_ne!(uploading.dir, with_sidecar.dir);
            assert_eq!(uploading.entry, with_sidecar.entry);
            std::fs::remove_file(partial).unwrap();
        }
    }

    #[test]
    fn links_are_stamped_as_links_and_unreachable_directories_give_none() {
        let (tmp, root) = setup();
        std::fs::write(root.path().join("real"), b"x").unwrap();
        symlink("real", root.path().join("w.bin")).unwrap();
        symlink(tmp.path(), root.path().join("out")).unwrap();
        std::fs::write(root.path().join("file"), b"x").unwrap();

        let linked = root.stamps(&target("models/w.bin")).unwrap();
        assert_eq!(linked.entry.unwrap().kind, StampKind::Link);
        assert!(root.stamps(&target("models/missing/w.bin")).is_none());
        assert!(
            root.stamps(&target("models/out/w.bin")).is_none(),
            "link out of the root"
        );
        assert!(
            root.stamps(&target("models/file/w.bin")).is_none(),
            "not a directory"
        );
    }
}
