//! The node's file subjects (`nodes.<id>.files.listdir`, `nodes.<id>.files.temp`) over the
//! worker's roots: blocking calls through the core's rules (`nodegate_core::node_files`) and
//! the store, usable from any runtime — both cluster members answer these subjects with them.

use std::sync::Arc;

use nodegate_core::keys::{self, ListTarget, Root, Roots};
use nodegate_core::node_files;
use nodegate_store::RootDir;

/// The worker's roots, opened once for the NATS handlers of `nodes.<id>.files.*` (blocking
/// calls, usable from any runtime).
pub struct NatsRoots {
    roots: Roots,
    models: RootDir,
    staging: RootDir,
    data: RootDir,
}

impl NatsRoots {
    /// Opens the three roots (they exist: the file server created them).
    ///
    /// # Errors
    /// A root that cannot be opened or created.
    pub fn open(roots: &Roots) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            models: RootDir::open_or_create(&roots.models)?,
            staging: RootDir::open_or_create(&roots.staging)?,
            data: RootDir::open_or_create(&roots.data)?,
            roots: roots.clone(),
        }))
    }

    fn dir(&self, root: Root) -> &RootDir {
        match root {
            Root::Models => &self.models,
            Root::Staging => &self.staging,
            Root::Data => &self.data,
        }
    }

    /// The reply to a `files.listdir` request: the core's key rules, then a listing beneath
    /// the root.
    #[must_use]
    pub fn listdir(&self, payload: &[u8]) -> Vec<u8> {
        let target = match node_files::listdir_target(payload) {
            Ok(target) => target,
            Err(reply) => return reply,
        };
        let (dir, rel) = match &target {
            ListTarget::Root(root) => (self.dir(*root), None),
            ListTarget::Dir(target) => (self.dir(target.root()), Some(target.rel())),
        };
        match dir.list(rel, keys::is_listable) {
            Ok(files) => node_files::listdir_reply(&files),
            Err(_) => node_files::error_reply("directory not found"),
        }
    }

    /// The reply to a `files.temp` request: a new output temp file in staging.
    #[must_use]
    pub fn temp(&self) -> Vec<u8> {
        match self.staging.create_output_temp() {
            Ok(name) => node_files::temp_reply(&self.roots.staging.join(name)),
            Err(_) => node_files::error_reply("creating temp file failed"),
        }
    }
}
