//! What a cluster member measures about its machine for registration and heartbeats: memory
//! from `/proc/meminfo`, the size and free space of the filesystem holding the models directory.
//! Read here (blocking: one small file read and one system call); the core turns the figures
//! into [`NodeFacts`]. Anything that cannot be read is left out (the frontend reads a missing
//! value as unknown). Both async members call it, so neither keeps its own copy.

use std::path::Path;

use nodegate_core::registration::NodeFacts;

/// Measures the facts of this machine; `models` is the models directory.
#[must_use]
pub fn measure(models: Option<&Path>) -> NodeFacts {
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
