//! Where a benchmark keeps the coordinator's data: on a real disk, since every state change
//! is an fsync'd write and a tmpfs would make them free. The file system is printed with
//! the figures; a RAM-backed one is refused unless asked for.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const RAM_BACKED: &[&str] = &["tmpfs", "ramfs"];

/// The file system type `path` lives on, from /proc/mounts (the longest mount point that
/// contains it).
pub(super) fn fs_type(path: &Path) -> Result<String> {
    let path = path.canonicalize().with_context(|| format!("{}", path.display()))?;
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(mount), Some(kind)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // /proc/mounts escapes spaces as \040.
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), kind.to_string()));
        }
    }
    best.map(|(_, k)| k).context("no mount point holds the data folder")
}

/// A fresh folder for the benchmark's state under `base` (default: `./.dockyard/bench-PID`,
/// on the disk the user runs from rather than a possibly RAM-backed /tmp); returns it and
/// its file system type.
pub(super) fn data_folder(base: Option<&Path>, allow_ram: bool) -> Result<(PathBuf, String)> {
    let base = match base {
        Some(b) => b.to_path_buf(),
        None => std::env::current_dir()?.join(".dockyard"),
    };
    let dir = base.join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let kind = fs_type(&dir)?;
    if RAM_BACKED.contains(&kind.as_str()) && !allow_ram {
        let _ = std::fs::remove_dir_all(&dir);
        bail!(
            "{} is on {kind}: durable writes would cost nothing there. Give --data-dir on a real disk, or --allow-tmpfs to measure it anyway",
            dir.display()
        );
    }
    Ok((dir, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_file_system_is_found_and_proc_is_not_a_disk() {
        assert!(!fs_type(Path::new("/")).expect("root").is_empty());
        assert_eq!(fs_type(Path::new("/proc/self")).expect("proc"), "proc");
    }

    #[test]
    fn a_ram_backed_folder_is_refused_unless_asked() {
        let shm = Path::new("/dev/shm");
        if fs_type(shm).ok().as_deref() != Some("tmpfs") {
            return;
        }
        let err = data_folder(Some(shm), false).expect_err("tmpfs refused");
        assert!(err.to_string().contains("--allow-tmpfs"), "{err}");
        let (dir, kind) = data_folder(Some(shm), true).expect("allowed");
        assert_eq!(kind, "tmpfs");
        let _ = std::fs::remove_dir_all(dir);
    }
}
