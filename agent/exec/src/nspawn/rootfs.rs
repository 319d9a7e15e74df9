//! The root filesystem of an nspawn attempt: a directory used as is, or a tarball unpacked
//! once into `<work_root>/rootfs/<sha256 of the file>` and reused by every later attempt.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use crate::process::{find_executable, DEFAULT_PATH};
use crate::ExecError;

fn invalid(message: String) -> ExecError {
    ExecError::InvalidSpec {
        field: "image",
        message,
    }
}

/// The rootfs directory for `image` (a directory or a `.tar`, `.tar.gz`/`.tgz`,
/// `.tar.zst`/`.tzst` file), unpacking a tarball on first use.
pub(crate) async fn prepare(work_root: &Path, image: &str) -> Result<PathBuf, ExecError> {
    let path = PathBuf::from(image);
    if !path.is_absolute() {
        return Err(invalid(format!("{image} must be an absolute path")));
    }
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| invalid(format!("{image}: {e}")))?;
    if meta.is_dir() {
        check_rootfs(&path, image)?;
        return Ok(path);
    }
    let compression = Compression::of(image)?;
    let hash = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || sha256_cached(&path))
            .await
            .map_err(|e| ExecError::Io {
                context: format!("hashing {image}"),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| ExecError::Io {
                context: format!("hashing {image}"),
                source,
            })?
    };
    let dir = work_root.join("rootfs").join(&hash);
    // One unpack at a time in this process; a concurrent agent process loses the rename race.
    static UNPACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = UNPACK.lock().await;
    if !dir.is_dir() {
        unpack(&path, compression, &dir, image).await?;
    }
    check_rootfs(&dir, image)?;
    Ok(dir)
}

/// A rootfs has `/bin` or `/usr` (a file, a dir or a merged-/usr symlink).
fn check_rootfs(dir: &Path, image: &str) -> Result<(), ExecError> {
    let has = |p: &str| std::fs::symlink_metadata(dir.join(p)).is_ok();
    if has("bin") || has("usr") {
        Ok(())
    } else {
        Err(invalid(format!(
            "{image} is not a root filesystem (it has neither /bin nor /usr)"
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of(image: &str) -> Result<Self, ExecError> {
        if image.ends_with(".tar") {
            Ok(Compression::None)
        } else if image.ends_with(".tar.gz") || image.ends_with(".tgz") {
            Ok(Compression::Gzip)
        } else if image.ends_with(".tar.zst") || image.ends_with(".tzst") {
            Ok(Compression::Zstd)
        } else {
            Err(invalid(format!(
                "{image} is neither a directory nor a .tar, .tar.gz or .tar.zst file"
            )))
        }
    }
}

async fn unpack(tarball: &Path, compression: Compression, dest: &Path, image: &str) -> Result<(), ExecError> {
    let tar = find_executable("tar", DEFAULT_PATH)
        .ok_or_else(|| ExecError::Unavailable("tar is not installed: apt install tar".into()))?;
    if compression == Compression::Zstd && find_executable("zstd", DEFAULT_PATH).is_none() {
        return Err(ExecError::Unavailable(
            "zstd is not installed (needed for .tar.zst images): apt install zstd".into(),
        ));
    }
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let io_err = |context: String| move |source| ExecError::Io { context, source };
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(io_err(format!("creating {}", parent.display())))?;
    let tmp = parent.join(format!(
        ".unpack-{}-{}",
        std::process::id(),
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    tokio::fs::create_dir(&tmp)
        .await
        .map_err(io_err(format!("creating {}", tmp.display())))?;

    let mut cmd = tokio::process::Command::new(tar);
    cmd.env_clear()
        .env("PATH", DEFAULT_PATH)
        .arg("--extract")
        .arg("--numeric-owner")
        .arg("--file")
        .arg(tarball)
        .arg("--directory")
        .arg(&tmp);
    match compression {
        Compression::None => {}
        Compression::Gzip => {
            cmd.arg("--gzip");
        }
        Compression::Zstd => {
            cmd.arg("--zstd");
        }
    }
    tracing::info!(image, dest = %dest.display(), "unpacking rootfs");
    let out = cmd
        .output()
        .await
        .map_err(io_err(format!("running tar on {image}")))?;
    if !out.status.success() {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(invalid(format!(
            "unpacking {image} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if let Err(e) = check_rootfs(&tmp, image) {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(e);
    }
    // Atomic publish: a half-unpacked tree is never used. Losing a race to another process
    // unpacking the same file is fine: its tree is identical.
    if let Err(e) = tokio::fs::rename(&tmp, dest).await {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        if !dest.is_dir() {
            return Err(ExecError::Io {
                context: format!("moving the unpacked {image} to {}", dest.display()),
                source: e,
            });
        }
    }
    Ok(())
}

/// SHA-256 of a file, remembered per (device, inode, size, mtime) so that a large tarball is
/// hashed once per agent process rather than once per attempt.
fn sha256_cached(path: &Path) -> std::io::Result<String> {
    type Key = (u64, u64, u64, i64, i64);
    static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
    let m = std::fs::metadata(path)?;
    let key = (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(h);
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Ok(mut c) = cache.lock() {
        c.insert(key, hex.clone());
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_follows_the_extension() {
        assert_eq!(Compression::of("/a/b.tar").ok(), Some(Compression::None));
        assert_eq!(Compression::of("/a/b.tar.gz").ok(), Some(Compression::Gzip));
        assert_eq!(Compression::of("/a/b.tar.zst").ok(), Some(Compression::Zstd));
        assert!(matches!(
            Compression::of("/a/b.zip"),
            Err(ExecError::InvalidSpec { field: "image", .. })
        ));
    }

    #[test]
    fn hash_is_sha256_hex() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x");
        std::fs::write(&f, b"abc").expect("write");
        assert_eq!(
            sha256_cached(&f).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
