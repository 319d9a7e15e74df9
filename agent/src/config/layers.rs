//! The file layers: discovery of the TOML files and applying their contents.
//!
//! Order, lowest precedence first: `<root>/usr/lib/cortex/config.d/*.toml` (sorted by file name),
//! `<root>/etc/cortex/config.toml`, `<root>/etc/cortex/config.d/*.toml` (sorted), then the file
//! given with `--config`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::{fs, io};

use super::error::ConfigError;
use super::merge::{describe, Merged, Raw};
use super::origin::Origin;
use super::schema::{known_keys, Node, ROOT};

/// A file to read, and whether its absence is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileLayer {
    pub(crate) path: PathBuf,
    pub(crate) required: bool,
}

/// Lists the configuration files in precedence order. Missing directories are skipped.
pub(crate) fn discover(root: &Path, explicit: Option<&Path>) -> Result<Vec<FileLayer>, ConfigError> {
    let optional = |path: PathBuf| FileLayer {
        path,
        required: false,
    };
    let mut files: Vec<FileLayer> = Vec::new();
    files.extend(
        toml_files_in(&root.join("usr/lib/cortex/config.d"))?
            .into_iter()
            .map(optional),
    );
    files.push(optional(root.join("etc/cortex/config.toml")));
    files.extend(
        toml_files_in(&root.join("etc/cortex/config.d"))?
            .into_iter()
            .map(optional),
    );
    if let Some(path) = explicit {
        files.push(FileLayer {
            path: path.to_path_buf(),
            required: true,
        });
    }
    Ok(files)
}

/// The `*.toml` files of `dir` sorted by file name; hidden files and directories are skipped.
fn toml_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let read_err = |error: io::Error| ConfigError::Read {
        path: dir.to_path_buf(),
        error,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
        let toml = path.extension().is_some_and(|ext| ext == "toml");
        if toml && !hidden && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Reads, parses and applies one file.
pub(crate) fn apply_file(merged: &mut Merged, file: &FileLayer) -> Result<(), ConfigError> {
    let path = &file.path;
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound && !file.required => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ConfigError::MissingConfigFile { path: path.clone() })
        }
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.clone(),
                error,
            })
        }
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = position(&text, e.span().map_or(0, |span| span.start));
        let message = e.message().trim().replace('\n', "; ");
        ConfigError::Syntax {
            path: path.clone(),
            line,
            column,
            message,
        }
    })?;
    apply_table(merged, &table, ROOT, "", &Origin::File(path.clone()))
}

/// Applies a parsed TOML table whose schema is `entries`; `prefix` is the table's dotted path.
pub(crate) fn apply_table(
    merged: &mut Merged,
    table: &toml::Table,
    entries: &[(&str, Node)],
    prefix: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match entries.iter().find(|(known, _)| known == name) {
            None => {
                let known = known_keys(prefix, entries);
                return Err(ConfigError::UnknownKey {
                    origin: origin.clone(),
                    key,
                    known,
                });
            }
            Some((_, Node::Leaf(leaf))) => merged.set(*leaf, Raw::Toml(value), origin)?,
            Some((_, Node::Table(sub))) => match value.as_table() {
                Some(inner) => apply_table(merged, inner, sub, &key, origin)?,
                None => {
                    let got = describe(Raw::Toml(value));
                    return Err(ConfigError::WrongType {
                        origin: origin.clone(),
                        key,
                        expected: "a table",
                        got,
                    });
                }
            },
        }
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("a = 1\nb = x", 10), (2, 5));
        assert_eq!(position("é = x", 4), (1, 4));
        assert_eq!(position("", 0), (1, 1));
        assert_eq!(position("ab", 99), (1, 3));
    }
}
