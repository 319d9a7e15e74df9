//! The read-only artifact root: turns a path a network client asked for into a regular file
//! inside the artifacts directory, or refuses.
//!
//! Two layers, both read-only:
//! 1. the artifacts directory — any regular file under it, after symlinks are resolved;
//! 2. a fixed set of named files registered by the operator (the iPXE binaries from Debian's
//!    `ipxe` package). A client can only pick one of these names; it never supplies their path.
//!    (A whole-directory overlay of `/usr/lib/ipxe` would not work: Debian ships `ipxe.efi` there
//!    as a symlink to `/boot/ipxe.efi`, which confinement must refuse.)
//!
//! Threat model: the client is hostile, the directory is the operator's. A refusal (traversal,
//! symlink escape, device file, …) is logged at warn with the peer and the requested path.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a request was not served. `NotFound` is ordinary; the rest are refusals worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing by that name (or a directory).
    NotFound,
    /// A `..` component, a NUL byte or another name that cannot be a file under the root.
    Traversal,
    /// The name resolves (through a symlink) to something outside the root.
    Escape,
    /// A device, FIFO, socket or other non-regular file.
    NotRegular,
    /// The file exists but could not be inspected.
    Io(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotFound => f.write_str("file not found"),
            Refusal::Traversal => f.write_str("path traversal refused"),
            Refusal::Escape => f.write_str("symlink pointing outside the root refused"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::Io(e) => write!(f, "cannot read: {e}"),
        }
    }
}

/// A file the root agreed to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical path (no symlinks) of a regular file inside the root or a registered file.
    pub path: PathBuf,
    /// Size in bytes when it was resolved.
    pub len: u64,
}

/// The artifacts directory plus registered named files.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    named: BTreeMap<String, PathBuf>,
}

impl Root {
    /// Opens `dir` as a root. It must exist and be a directory; it is canonicalized once here.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = dir
            .canonicalize()
            .map_err(|e| io::Error::new(e.kind(), format!("artifacts directory {}: {e}", dir.display())))?;
        if !canonical.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("artifacts directory {} is not a directory", dir.display()),
            ));
        }
        Ok(Root {
            dir: canonical,
            named: BTreeMap::new(),
        })
    }

    /// The canonical artifacts directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers `name` (one plain file name) as `path`, served when the artifacts directory has
    /// no file of that name. `path` is canonicalized now and must be a regular file.
    pub fn add_named(&mut self, name: &str, path: &Path) -> io::Result<()> {
        if !is_plain_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a plain file name"),
            ));
        }
        let canonical = path.canonicalize()?;
        let meta = std::fs::metadata(&canonical)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        self.named.insert(name.to_string(), canonical);
        Ok(())
    }

    /// Registered names with their canonical paths.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.named.iter().map(|(k, v)| (k.as_str(), v.as_path()))
    }

    /// True if `name` is served, from the directory or as a registered file.
    pub fn has(&self, name: &str) -> bool {
        self.lookup(name).is_ok()
    }

    /// Resolves `requested` like [`Root::resolve`] without logging (for the server's own checks).
    pub fn lookup(&self, requested: &str) -> Result<Resolved, Refusal> {
        let parts = split(requested)?;
        let joined = parts.iter().fold(self.dir.clone(), |p, c| p.join(c));
        match std::fs::symlink_metadata(&joined) {
            Ok(_) => self.confine(&joined),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                if let [only] = parts.as_slice() {
                    if let Some(path) = self.named.get(*only) {
                        return regular(path);
                    }
                }
                Err(Refusal::NotFound)
            }
            Err(e) => Err(Refusal::Io(e.to_string())),
        }
    }

    /// Resolves a client's path. Leading slashes mean the root (`/x` is `x` under it), `\` is a
    /// separator (some PXE clients send DOS paths), `.` and empty components are ignored, and any
    /// `..` is refused outright (even one that would stay inside). Refusals other than
    /// "not found" are logged at warn with `peer` and the requested path.
    pub fn resolve(&self, requested: &str, peer: &str) -> Result<Resolved, Refusal> {
        let result = self.lookup(requested);
        match &result {
            Ok(r) => tracing::debug!(%peer, requested, path = %r.path.display(), "serving"),
            Err(Refusal::NotFound) => tracing::debug!(%peer, requested, "file not found"),
            Err(refusal) => tracing::warn!(%peer, requested, %refusal, "request refused"),
        }
        result
    }

    fn confine(&self, joined: &Path) -> Result<Resolved, Refusal> {
        let canonical = match joined.canonicalize() {
            Ok(c) => c,
            // A dangling symlink: nothing to serve either way.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                return Err(Refusal::NotFound)
            }
            Err(e) => return Err(Refusal::Io(e.to_string())),
        };
        if !canonical.starts_with(&self.dir) {
            return Err(Refusal::Escape);
        }
        regular(&canonical)
    }
}

/// Metadata check on a canonical path: regular files only. Checked before anything opens it, so a
/// FIFO is never opened (opening one would block).
fn regular(canonical: &Path) -> Result<Resolved, Refusal> {
    match std::fs::metadata(canonical) {
        Ok(m) if m.is_file() => Ok(Resolved {
            path: canonical.to_path_buf(),
            len: m.len(),
        }),
        Ok(m) if m.is_dir() => Err(Refusal::NotFound),
        Ok(_) => Err(Refusal::NotRegular),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Refusal::NotFound),
        Err(e) => Err(Refusal::Io(e.to_string())),
    }
}

/// Splits a requested path into plain components, refusing anything that is not one.
fn split(requested: &str) -> Result<Vec<&str>, Refusal> {
    if requested.contains('\0') {
        return Err(Refusal::Traversal);
    }
    let mut parts = Vec::new();
    for part in requested.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(Refusal::Traversal),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(Refusal::NotFound);
    }
    Ok(parts)
}

/// One path component without separators, `..`, `.` or control characters.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let art = tmp.path().join("art");
        std::fs::create_dir_all(art.join("sub")).unwrap();
        std::fs::write(art.join("vmlinuz"), b"kernel").unwrap();
        std::fs::write(art.join("sub/initrd"), b"initrd!").unwrap();
        std::fs::write(tmp.path().join("secret"), b"outside").unwrap();
        symlink(tmp.path().join("secret"), art.join("escape")).unwrap();
        symlink("/etc/passwd", art.join("passwd")).unwrap();
        symlink("vmlinuz", art.join("linux")).unwrap();
        symlink(tmp.path(), art.join("updir")).unwrap();
        symlink("/dev/null", art.join("null")).unwrap();
        symlink(art.join("missing"), art.join("dangling")).unwrap();
        let root = Root::new(&art).unwrap();
        (tmp, root)
    }

    #[test]
    fn serves_regular_files_and_inside_symlinks() {
        let (_t, root) = fixture();
        let r = root.resolve("vmlinuz", "test").unwrap();
        assert_eq!(r.len, 6);
        assert_eq!(root.resolve("/vmlinuz", "test").unwrap(), r);
        assert_eq!(root.resolve("//./vmlinuz", "test").unwrap(), r);
        assert_eq!(root.resolve("linux", "test").unwrap(), r);
        assert_eq!(root.resolve("sub/initrd", "test").unwrap().len, 7);
        assert_eq!(root.resolve("sub\\initrd", "test").unwrap().len, 7);
    }

    #[test]
    fn refuses_dotdot_even_when_it_would_stay_inside() {
        let (_t, root) = fixture();
        for p in [
            "../secret",
            "/../secret",
            "sub/../vmlinuz",
            "..\\secret",
            "a/../../x",
            "..",
        ] {
            assert_eq!(root.resolve(p, "test"), Err(Refusal::Traversal), "{p}");
        }
        assert_eq!(root.resolve("vm\0linuz", "test"), Err(Refusal::Traversal));
    }

    #[test]
    fn absolute_paths_stay_in_the_root() {
        let (_t, root) = fixture();
        assert_eq!(root.resolve("/etc/passwd", "test"), Err(Refusal::NotFound));
    }

    #[test]
    fn refuses_symlinks_pointing_outside() {
        let (_t, root) = fixture();
        assert_eq!(root.resolve("escape", "test"), Err(Refusal::Escape));
        assert_eq!(root.resolve("passwd", "test"), Err(Refusal::Escape));
        assert_eq!(root.resolve("updir/secret", "test"), Err(Refusal::Escape));
        assert_eq!(root.resolve("null", "test"), Err(Refusal::Escape));
    }

    #[test]
    fn refuses_devices_directories_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path()).unwrap();
        assert_eq!(root.resolve("nothing", "test"), Err(Refusal::NotFound));
        assert_eq!(root.resolve("", "test"), Err(Refusal::NotFound));
        assert_eq!(root.resolve("/", "test"), Err(Refusal::NotFound));
        // A root that is /dev itself: confinement holds, but device files are still refused.
        let dev = Root::new(Path::new("/dev")).unwrap();
        assert_eq!(dev.resolve("null", "test"), Err(Refusal::NotRegular));
        let (_t, root) = fixture();
        assert_eq!(root.resolve("sub", "test"), Err(Refusal::NotFound));
        assert_eq!(root.resolve("dangling", "test"), Err(Refusal::NotFound));
        assert_eq!(root.resolve("vmlinuz/x", "test"), Err(Refusal::NotFound));
    }

    #[test]
    fn named_files_fill_in_but_the_directory_wins() {
        let (tmp, mut root) = fixture();
        let loader = tmp.path().join("undionly.kpxe");
        std::fs::write(&loader, b"loader").unwrap();
        root.add_named("undionly.kpxe", &loader).unwrap();
        root.add_named("vmlinuz", &loader).unwrap();
        assert_eq!(root.resolve("undionly.kpxe", "t").unwrap().len, 6);
        assert_eq!(root.resolve("/undionly.kpxe", "t").unwrap().len, 6);
        assert!(root
            .resolve("vmlinuz", "t")
            .unwrap()
            .path
            .ends_with("art/vmlinuz"));
        assert_eq!(root.resolve("sub/undionly.kpxe", "t"), Err(Refusal::NotFound));
        assert!(root.add_named("../x", &loader).is_err());
        assert!(root.add_named("dir", tmp.path()).is_err());
    }

    #[test]
    fn missing_or_non_directory_root_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Root::new(&tmp.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        assert!(Root::new(&tmp.path().join("file")).is_err());
    }
}
