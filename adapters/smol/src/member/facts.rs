//! What the worker measures about its machine for registration and heartbeats: the memory
//! figures of `/proc/meminfo` and a `statvfs` of the models directory, read here and turned
//! into [`NodeFacts`] by the core.

use std::path::Path;

use nodegate_core::registration::NodeFacts;

/// Measures the facts of this machine (blocking: a file read and one system call).
pub(crate) fn measure(models: Option<&Path>) -> NodeFacts {
    let mut facts = NodeFacts::default();
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        facts.read_meminfo(&meminfo);
    }
    if let Some(stat) = models.and_then(|dir| rustix::fs::statvfs(dir).ok()) {
        facts.read_statvfs(stat.f_blocks, stat.f_bavail, stat.f_frsize);
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reports_memory_and_disk() {
        let facts = measure(Some(Path::new("/")));
        assert!(facts.total_ram.is_some_and(|t| t > 0));
        assert!(facts.total_disk.is_some_and(|t| t > 0));
    }
}
