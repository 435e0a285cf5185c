//! What the worker measures about its machine for registration and heartbeats: memory from
//! `/proc/meminfo`, the size and free space of the filesystem holding the models directory.
//! Anything that cannot be read is left out (the frontend reads a missing value as unknown).

use std::path::Path;

use nodegate_core::registration::NodeFacts;

/// Measures the facts of this machine; `models` is the models directory.
pub(crate) fn measure(models: Option<&Path>) -> NodeFacts {
    let mut facts = NodeFacts::default();
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        facts.total_ram = meminfo_bytes(&meminfo, "MemTotal:");
        facts.available_ram = meminfo_bytes(&meminfo, "MemAvailable:");
    }
    if let Some(stat) = models.and_then(|dir| rustix::fs::statvfs(dir).ok()) {
        facts.total_disk = Some(stat.f_blocks.saturating_mul(stat.f_frsize));
        facts.available_disk = Some(stat.f_bavail.saturating_mul(stat.f_frsize));
    }
    facts
}

/// A `/proc/meminfo` line such as `MemTotal:  16318428 kB`, in bytes.
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines_are_read_in_bytes() {
        let text = "MemTotal:       16318428 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal:"), Some(16_318_428 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable:"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_bytes(text, "SwapTotal:"), None);
    }

    #[test]
    fn this_machine_reports_memory_and_disk() {
        let facts = measure(Some(Path::new("/")));
        assert!(facts.total_ram.is_some_and(|t| t > 0));
        assert!(facts.total_disk.is_some_and(|t| t > 0));
    }
}
