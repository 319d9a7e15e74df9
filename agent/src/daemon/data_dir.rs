//! The data directory: created 0700 if missing, checked for access, never wiped.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct DataDirs {
    pub store: PathBuf,
    pub admin_token: PathBuf,
}

pub fn prepare(dir: &Path) -> anyhow::Result<DataDirs> {
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => anyhow::bail!("data dir {} exists but is not a directory", dir.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating data dir {}", dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("data dir {} is not accessible", dir.display())),
    }
    // Fail early and clearly if we cannot write here (rather than deep inside the store).
    let probe = dir.join(".write-test");
    fs::write(&probe, b"").with_context(|| format!("data dir {} is not writable", dir.display()))?;
    let _ = fs::remove_file(&probe);
    fs::read_dir(dir).with_context(|| format!("data dir {} is not readable", dir.display()))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    Ok(DataDirs {
        store: dir.join("raft.redb"),
        admin_token: dir.join("admin.token"),
    })
}
