//! Where keys and certificates live in the data dir, and writing them safely.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{ClusterCa, NodeCredentials, PkiError};

/// The PKI files of one data dir.
pub struct NodeFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

impl NodeFiles {
    pub fn in_dir(dir: &Path) -> NodeFiles {
        NodeFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            node_cert: dir.join("node.crt"),
            node_key: dir.join("node.key"),
        }
    }

    pub fn save_ca(&self, ca: &ClusterCa) -> Result<(), PkiError> {
        write_file(&self.ca_key, ca.key_pem(), 0o600)?;
        write_file(&self.ca_cert, &ca.cert_pem, 0o644)
    }

    /// The CA with its key, if this data dir has one (coordinators).
    pub fn load_ca(&self) -> Result<Option<ClusterCa>, PkiError> {
        let (Some(cert), Some(key)) = (read_opt(&self.ca_cert)?, read_opt(&self.ca_key)?) else {
            return Ok(None);
        };
        ClusterCa::from_pem(cert, key)
            .map(Some)
            .map_err(|e| PkiError::File {
                path: self.ca_key.clone(),
                detail: e.to_string(),
            })
    }
}

pub fn save_node_credentials(files: &NodeFiles, creds: &NodeCredentials) -> Result<(), PkiError> {
    write_file(&files.node_key, &creds.key_pem, 0o600)?;
    write_file(&files.node_cert, &creds.cert_pem, 0o644)?;
    write_file(&files.ca_cert, &creds.ca_pem, 0o644)
}

/// A joining node keeps its key from the first attempt, so a restart while pending reuses it
/// (and the verification code stays the same).
pub fn save_node_key(files: &NodeFiles, key_pem: &str) -> Result<(), PkiError> {
    write_file(&files.node_key, key_pem, 0o600)
}

pub fn load_node_key(files: &NodeFiles) -> Result<Option<String>, PkiError> {
    read_opt(&files.node_key)
}

pub fn load_node_credentials(files: &NodeFiles) -> Result<Option<NodeCredentials>, PkiError> {
    match (
        read_opt(&files.node_key)?,
        read_opt(&files.node_cert)?,
        read_opt(&files.ca_cert)?,
    ) {
        (Some(key_pem), Some(cert_pem), Some(ca_pem)) => Ok(Some(NodeCredentials {
            key_pem,
            cert_pem,
            ca_pem,
        })),
        _ => Ok(None),
    }
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::File {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// Atomic write (temp file, fsync, rename, fsync of the directory so the rename itself is on
/// disk before we act on it) with the given mode.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let err = |e: std::io::Error| PkiError::File {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
        }
        _ => Ok(()),
    }
}
