//! What a failed file operation means for the client: which status and words to answer with.
//!
//! A driver's file store fails in its own terms (`nodegate-store`'s `StoreError` maps itself
//! onto a [`FileFault`] with `StoreError::fault`); the answer is a protocol decision and lives
//! here, once, for every driver. Reads and writes answer differently: a read hides every way a
//! key can be unreachable behind the same "not found" (nothing outside the roots can be probed),
//! a write names what the client has to change (400) or says the disk is full (507).
//!
//! ```
//! use http::StatusCode;
//! use nodegate_core::file_fault::FileFault;
//!
//! let answer = |reply: Option<nodegate_core::response::Reply>| reply.map(|reply| reply.status);
//! assert_eq!(answer(FileFault::Escape.read_reply("not found")), Some(StatusCode::NOT_FOUND));
//! assert_eq!(answer(FileFault::Escape.write_reply()), Some(StatusCode::BAD_REQUEST));
//! assert_eq!(answer(FileFault::NoSpace.write_reply()), Some(StatusCode::INSUFFICIENT_STORAGE));
//! // The server's own failure: the driver logs the underlying error and answers a bare 500.
//! assert_eq!(answer(FileFault::NoSpace.read_reply("not found")), None);
//! assert_eq!(FileFault::internal_reply().status, StatusCode::INTERNAL_SERVER_ERROR);
//! ```

use http::StatusCode;

use crate::response::Reply;

/// The kinds of file failure that the client's answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileFault {
    /// Nothing at the path.
    NotFound,
    /// The path leaves its root (a symbolic link or `..`, refused at open time).
    Escape,
    /// A directory where a file is needed.
    IsADirectory,
    /// A component of the path that must be a directory is a file.
    NotADirectory,
    /// A FIFO, socket or device where a regular file is needed.
    NotAFile,
    /// A name in the path is too long for the filesystem.
    NameTooLong,
    /// The disk (or the quota) is full.
    NoSpace,
    /// The file reached a size limit of the process or the filesystem.
    FileTooLarge,
    /// Anything else (permissions, hardware, ...).
    Internal,
}

impl FileFault {
    /// The answer to a failed read (`HEAD`, `GET`, a listing, the state an upload is planned
    /// from). Every way a key can be unreachable — missing, escaping, under a file, a FIFO,
    /// socket or device — answers `404` with `missing`, so nothing outside the roots can be
    /// probed.
    ///
    /// `None`: the server's own failure. The driver logs the underlying error (the client
    /// learns nothing of it) and answers [`FileFault::internal_reply`].
    #[must_use]
    pub fn read_reply(self, missing: &str) -> Option<Reply> {
        match self {
            Self::NotFound | Self::Escape | Self::NotADirectory | Self::NotAFile => {
                Some(Reply::error(StatusCode::NOT_FOUND, missing))
            }
            Self::IsADirectory => Some(Reply::error(StatusCode::BAD_REQUEST, "is a directory")),
            Self::NameTooLong => Some(name_too_long()),
            Self::NoSpace | Self::FileTooLarge | Self::Internal => None,
        }
    }

    /// The answer to a failed write (an upload, a temp file): what the client can fix is a
    /// `400` that says what to fix, a full disk or a size limit `507`.
    ///
    /// `None`: the server's own failure, as for [`FileFault::read_reply`] (a file that vanishes
    /// in the middle of a write is not the client's doing either).
    #[must_use]
    pub fn write_reply(self) -> Option<Reply> {
        let bad_request = |message| Reply::error(StatusCode::BAD_REQUEST, message);
        Some(match self {
            Self::Escape => bad_request("invalid key: the path leaves the allowed directory"),
            Self::IsADirectory => bad_request("destination is a directory"),
            Self::NotADirectory => bad_request("invalid key: a parent of this key is a file"),
            Self::NotAFile => {
                bad_request("destination is not a regular file (a FIFO, socket or device)")
            }
            Self::NameTooLong => name_too_long(),
            Self::NoSpace => Reply::error(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient storage: the worker's disk is full",
            ),
            Self::FileTooLarge => Reply::error(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient storage: the file reached the worker's file size limit",
            ),
            Self::NotFound | Self::Internal => return None,
        })
    }

    /// The answer to a fault that is the server's own: a bare `500` that names no cause.
    #[must_use]
    pub fn internal_reply() -> Reply {
        Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "file operation failed")
    }
}

fn name_too_long() -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "invalid key: name too long")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FileFault; 9] = [
        FileFault::NotFound,
        FileFault::Escape,
        FileFault::IsADirectory,
        FileFault::NotADirectory,
        FileFault::NotAFile,
        FileFault::NameTooLong,
        FileFault::NoSpace,
        FileFault::FileTooLarge,
        FileFault::Internal,
    ];

    fn body(reply: &Reply) -> &str {
        std::str::from_utf8(&reply.body).unwrap_or("<not utf-8>")
    }

    fn some(reply: Option<Reply>, fault: FileFault) -> Reply {
        reply.unwrap_or_else(|| panic!("{fault:?} has an answer of its own"))
    }

    #[test]
    fn a_read_hides_every_unreachable_key_behind_the_same_not_found() {
        for fault in [
            FileFault::NotFound,
            FileFault::Escape,
            FileFault::NotADirectory,
            FileFault::NotAFile,
        ] {
            let reply = some(fault.read_reply("file not found"), fault);
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{fault:?}");
            assert_eq!(body(&reply), "file not found\n", "{fault:?}");
        }
    }

    #[test]
    fn a_read_of_a_directory_or_an_overlong_name_is_the_clients_mistake() {
        let fault = FileFault::IsADirectory;
        let reply = some(fault.read_reply("not found"), fault);
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(body(&reply), "is a directory\n");
        let fault = FileFault::NameTooLong;
        let reply = some(fault.read_reply("not found"), fault);
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(body(&reply), "invalid key: name too long\n");
    }

    #[test]
    fn a_write_names_what_the_client_has_to_change() {
        let cases = [
            (
                FileFault::Escape,
                "invalid key: the path leaves the allowed directory\n",
            ),
            (FileFault::IsADirectory, "destination is a directory\n"),
            (
                FileFault::NotADirectory,
                "invalid key: a parent of this key is a file\n",
            ),
            (
                FileFault::NotAFile,
                "destination is not a regular file (a FIFO, socket or device)\n",
            ),
            (FileFault::NameTooLong, "invalid key: name too long\n"),
        ];
        for (fault, words) in cases {
            let reply = some(fault.write_reply(), fault);
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{fault:?}");
            assert_eq!(body(&reply), words, "{fault:?}");
        }
    }

    #[test]
    fn a_full_disk_or_a_size_limit_is_insufficient_storage_on_write_only() {
        for fault in [FileFault::NoSpace, FileFault::FileTooLarge] {
            let reply = some(fault.write_reply(), fault);
            assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE, "{fault:?}");
            assert!(
                body(&reply).starts_with("insufficient storage: "),
                "{fault:?}"
            );
            // Reading never runs out of space: if it does, something else is wrong.
            assert_eq!(fault.read_reply("not found"), None, "{fault:?}");
        }
    }

    #[test]
    fn only_the_servers_own_faults_are_left_to_the_driver_and_their_reply_names_no_cause() {
        assert_eq!(FileFault::Internal.read_reply("not found"), None);
        assert_eq!(FileFault::Internal.write_reply(), None);
        assert_eq!(FileFault::NotFound.write_reply(), None);
        let reply = FileFault::internal_reply();
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(&reply), "file operation failed\n");
    }

    #[test]
    fn every_answer_is_a_client_error_or_insufficient_storage() {
        for fault in ALL {
            for reply in [fault.read_reply("not found"), fault.write_reply()]
                .into_iter()
                .flatten()
            {
                assert!(
                    reply.status.is_client_error()
                        || reply.status == StatusCode::INSUFFICIENT_STORAGE,
                    "{fault:?}"
                );
                assert!(body(&reply).ends_with('\n'), "{fault:?}");
            }
        }
    }
}
