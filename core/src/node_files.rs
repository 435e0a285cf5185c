//! The worker's file-staging NATS subjects: `nodes.<id>.files.listdir` and
//! `nodes.<id>.files.temp` (spec §5.6), answered from the worker's own roots.
//!
//! Requests are JSON; replies are JSON and sent only when the request carries a reply subject.
//! A listing request `{"key_prefix": "<key>"}` goes through the same key rules as
//! `GET /v1/files-list/{key}` ([`keys::resolve_list_key`]): a prefix that is not a valid key —
//! a `..` segment, an absolute path, … — is answered `{"error":"invalid key prefix"}` before
//! anything is read. A successful listing is `{"files":[…]}` with paths relative to the listed
//! directory, and an empty one is `{}` (LocalAI's typed reply; its frontend reads both as an
//! empty list). A temp-file request allocates an empty output file at the top of staging, as
//! `POST /v1/files/temp` does, and answers `{"local_path": "<absolute path>"}`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{self, ListTarget};

/// What a listing request asks for.
///
/// # Errors
/// The reply to send instead (`{"error":"invalid request"}` for a body that is not the
/// request's JSON, `{"error":"invalid key prefix"}` for a prefix the key rules refuse).
pub fn listdir_target(payload: &[u8]) -> Result<ListTarget, Vec<u8>> {
    #[derive(Deserialize)]
    struct ListDirRequest {
        key_prefix: String,
    }
    let request: ListDirRequest =
        serde_json::from_slice(payload).map_err(|_| error_reply("invalid request"))?;
    keys::resolve_list_key(request.key_prefix.as_bytes())
        .map_err(|_| error_reply("invalid key prefix"))
}

/// The reply to a successful listing.
#[must_use]
pub fn listdir_reply(files: &[String]) -> Vec<u8> {
    #[derive(Serialize)]
    struct ListDirReply<'a> {
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        files: &'a [String],
    }
    serde_json::to_vec(&ListDirReply { files }).expect("a listing always serialises")
}

/// The reply to an allocated temp file.
#[must_use]
pub fn temp_reply(local_path: &Path) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "local_path": local_path.to_string_lossy() }))
        .expect("a path always serialises")
}

/// An error reply, `{"error":"<message>"}`. The message must carry no absolute path.
#[must_use]
pub fn error_reply(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message }))
        .expect("a message always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Root;

    #[test]
    fn listing_routes_through_the_key_rules() {
        assert_eq!(
            listdir_target(br#"{"key_prefix":"models/"}"#),
            Ok(ListTarget::Root(Root::Models))
        );
        let Ok(ListTarget::Dir(target)) = listdir_target(br#"{"key_prefix":"models/m1"}"#) else {
            panic!("a directory in models expected");
        };
        assert_eq!((target.root(), target.rel()), (Root::Models, "m1"));
    }

    #[test]
    fn escaping_prefixes_are_refused_before_any_read() {
        for prefix in ["../../../etc", "/etc", "models/../../x", "a/./b", ""] {
            let body = serde_json::to_vec(&serde_json::json!({ "key_prefix": prefix })).unwrap();
            assert_eq!(
                listdir_target(&body),
                Err(br#"{"error":"invalid key prefix"}"#.to_vec()),
                "{prefix:?}"
            );
        }
        assert_eq!(
            listdir_target(b"nope"),
            Err(br#"{"error":"invalid request"}"#.to_vec())
        );
    }

    #[test]
    fn replies_have_localai_shapes() {
        assert_eq!(
            listdir_reply(&["a.txt".into(), "sub/b.txt".into()]),
            br#"{"files":["a.txt","sub/b.txt"]}"#
        );
        assert_eq!(listdir_reply(&[]), b"{}");
        assert_eq!(
            temp_reply(Path::new("/srv/staging/localai-output-1.tmp")),
            br#"{"local_path":"/srv/staging/localai-output-1.tmp"}"#
        );
    }
}
