//! Which storage roots a worker may serve (issue 12, item 6).
//!
//! The three roots (models, staging, data) are walked at start to remove the temp files of
//! interrupted uploads, and every key is resolved beneath exactly one of them. A root that is
//! the filesystem root, or roots nested in one another, would make the sweep walk (and delete
//! in) far more than the worker's own files, and let one root's keys reach another's files. So
//! [`check_roots`] refuses them, lexically, before anything is created; the adapter checks
//! again on the resolved paths (symbolic links) and checks that each root takes writes.

use std::path::{Component, Path};

use thiserror::Error;

use crate::config::MODELS_PATH;
use crate::keys::Roots;

/// Why a set of roots is refused. Each message names `LOCALAI_MODELS_PATH`, which sets all
/// three (staging and data are its siblings).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RootsRefusal {
    /// A root is the filesystem root `/`.
    #[error(
        "the {name} directory is the filesystem root `/`: set {MODELS_PATH} to a directory of \
         its own (staging and data are created next to it)"
    )]
    FilesystemRoot {
        /// Which root (`models`, `staging`, `data`).
        name: &'static str,
    },
    /// A root is not an absolute path (the adapter makes them absolute before asking).
    #[error("the {name} directory is not an absolute path: set {MODELS_PATH} to an absolute path")]
    Relative {
        /// Which root.
        name: &'static str,
    },
    /// One root lies inside another (or they are the same directory).
    #[error(
        "the {inner} directory lies inside the {outer} directory (or is the same): set \
         {MODELS_PATH} so that models, staging and data are three separate directories"
    )]
    Overlap {
        /// The root that contains the other.
        outer: &'static str,
        /// The root contained in it.
        inner: &'static str,
    },
}

/// Accepts three absolute roots of which none is `/` and none contains another, comparing
/// components lexically (`.` ignored, `..` refused as not clean: pass cleaned paths).
///
/// # Errors
/// The first problem found, as a [`RootsRefusal`].
pub fn check_roots(roots: &Roots) -> Result<(), RootsRefusal> {
    let named = [
        ("models", roots.models.as_path()),
        ("staging", roots.staging.as_path()),
        ("data", roots.data.as_path()),
    ];
    for (name, path) in named {
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(RootsRefusal::Relative { name });
        }
        if is_filesystem_root(path) {
            return Err(RootsRefusal::FilesystemRoot { name });
        }
    }
    for (i, (outer, outer_path)) in named.iter().enumerate() {
        for (j, (inner, inner_path)) in named.iter().enumerate() {
            if i != j && contains(outer_path, inner_path) {
                return Err(RootsRefusal::Overlap { outer, inner });
            }
        }
    }
    Ok(())
}

fn is_filesystem_root(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
}

/// Whether `inner` is `outer` or lies below it, component by component.
fn contains(outer: &Path, inner: &Path) -> bool {
    fn clean(p: &Path) -> Vec<Component<'_>> {
        p.components().filter(|c| *c != Component::CurDir).collect()
    }
    clean(inner).starts_with(&clean(outer))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn roots(models: &str, staging: &str, data: &str) -> Roots {
        Roots {
            models: PathBuf::from(models),
            staging: PathBuf::from(staging),
            data: PathBuf::from(data),
        }
    }

    #[test]
    fn siblings_are_accepted() {
        assert_eq!(
            check_roots(&roots("/srv/ai/models", "/srv/ai/staging", "/srv/ai/data")),
            Ok(())
        );
        // `/models` has `/staging` and `/data` as siblings: fine, none is `/`.
        assert_eq!(check_roots(&roots("/models", "/staging", "/data")), Ok(()));
        // A shared prefix of characters is not nesting.
        assert_eq!(check_roots(&roots("/a/m", "/a/m2", "/a/m3")), Ok(()));
    }

    #[test]
    fn the_filesystem_root_is_refused_and_the_message_names_the_variable() {
        for path in ["/", "/.", "//"] {
            let refusal = check_roots(&roots(path, "/staging", "/data")).expect_err(path);
            assert_eq!(refusal, RootsRefusal::FilesystemRoot { name: "models" });
            assert!(
                refusal.to_string().contains("LOCALAI_MODELS_PATH"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn nested_or_equal_roots_are_refused() {
        let refusal = check_roots(&roots("/x/m", "/x/m/staging", "/x/data")).expect_err("nested");
        assert_eq!(
            refusal,
            RootsRefusal::Overlap {
                outer: "models",
                inner: "staging"
            }
        );
        assert!(refusal.to_string().contains("LOCALAI_MODELS_PATH"));
        assert!(check_roots(&roots("/x/m", "/x/s", "/x/m")).is_err());
        assert!(check_roots(&roots("/x/m/./d", "/x/s", "/x/m")).is_err());
    }

    #[test]
    fn relative_roots_are_refused() {
        assert_eq!(
            check_roots(&roots("models", "/s", "/d")),
            Err(RootsRefusal::Relative { name: "models" })
        );
        assert_eq!(
            check_roots(&roots("/a/../m", "/s", "/d")),
            Err(RootsRefusal::Relative { name: "models" })
        );
    }
}
