//! The kernel command line layer: `cortex.KEY=VALUE` words, dotted keys for tables
//! (`cortex.raft.heartbeat_interval_ms=100`). Other words are ignored.
//!
//! Words are split at whitespace; double quotes group text with spaces and are removed, as the
//! kernel does (`cortex.node_name="a b"` and `"cortex.node_name=a b"` are the same).

use super::error::ConfigError;
use super::merge::{Merged, Raw};
use super::model::REDACTED;
use super::origin::Origin;
use super::schema::{first_leaf_below, resolve, Found};

const PREFIX: &str = "cortex.";

/// One whitespace-separated word, quotes removed.
#[derive(Debug, PartialEq, Eq)]
struct Word<'a> {
    text: String,
    /// The word as written, quotes included.
    raw: &'a str,
    /// A double quote was opened and never closed.
    unterminated: bool,
}

fn words(line: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() && !quoted {
            if let Some((start, text)) = current.take() {
                out.push(Word {
                    text,
                    raw: line.get(start..i).unwrap_or_default(),
                    unterminated: false,
                });
            }
            continue;
        }
        let (_, text) = current.get_or_insert_with(|| (i, String::new()));
        if c == '"' {
            quoted = !quoted;
        } else {
            text.push(c);
        }
    }
    if let Some((start, text)) = current {
        out.push(Word {
            text,
            raw: line.get(start..).unwrap_or_default(),
            unterminated: quoted,
        });
    }
    out
}

/// The `(key, value)` pairs of the `cortex.` words, in order, keys without the prefix.
fn parse(line: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    for word in words(line) {
        let Some(setting) = word.text.strip_prefix(PREFIX) else {
            continue;
        };
        if word.unterminated {
            let word = match setting.split_once('=') {
                Some((key, _)) if is_secret(key) => format!("{PREFIX}{key}={REDACTED}"),
                _ => word.raw.to_owned(),
            };
            return Err(ConfigError::CmdlineUnterminatedQuote { word });
        }
        let Some((key, value)) = setting.split_once('=') else {
            return Err(ConfigError::CmdlineMissingValue { word: word.text });
        };
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Whether the dotted `key` is a secret, whose value no message may show.
fn is_secret(key: &str) -> bool {
    let found = resolve(key.split('.'), |name, segment| name == segment);
    matches!(found, Ok(Found::Leaf(leaf)) if leaf.is_secret())
}

/// Applies the `cortex.` settings of the kernel command line `line`.
pub(crate) fn apply(merged: &mut Merged, line: &str) -> Result<(), ConfigError> {
    let origin = Origin::Cmdline;
    for (key, value) in parse(line)? {
        match resolve(key.split('.'), |name, segment| name == segment) {
            Ok(Found::Leaf(leaf)) => merged.set(leaf, Raw::Text(&value), &origin)?,
            Ok(Found::Table) => {
                let example = first_leaf_below(&key).map_or_else(String::new, |k| k.path().to_owned());
                let example = format!("{PREFIX}{example}=VALUE");
                return Err(ConfigError::TableKey { origin, key, example });
            }
            Err(known) => return Err(ConfigError::UnknownKey { origin, key, known }),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(line: &str) -> Vec<(String, String)> {
        parse(line).unwrap()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn foreign_words_are_ignored() {
        let line = "BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet cortex=1 cortexx.a=b x.cortex.y=z\n";
        assert_eq!(pairs(line), vec![]);
        assert_eq!(pairs(""), vec![]);
    }

    #[test]
    fn values_keys_and_quotes() {
        let line = "ro cortex.node_name=n1 cortex.raft.heartbeat_interval_ms=100 \
                    cortex.data_dir=\"/srv/my data\" \"cortex.log_level=info,a=debug\" cortex.x=a=b";
        assert_eq!(
            pairs(line),
            vec![
                pair("node_name", "n1"),
                pair("raft.heartbeat_interval_ms", "100"),
                pair("data_dir", "/srv/my data"),
                pair("log_level", "info,a=debug"),
                pair("x", "a=b"),
            ]
        );
        assert_eq!(
            pairs("cortex.node_name=\t cortex.a=\"\""),
            vec![pair("node_name", ""), pair("a", "")]
        );
    }

    #[test]
    fn quoted_foreign_words_do_not_leak() {
        let line = "dyndbg=\"file x.c +p cortex.node_name=evil\" cortex.node_name=good";
        assert_eq!(pairs(line), vec![pair("node_name", "good")]);
        assert_eq!(pairs("foo=\"unterminated cortex.node_name=x"), vec![]);
    }

    #[test]
    fn bare_key_is_an_error_naming_it() {
        let err = parse("quiet cortex.node_name ro").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: cortex.node_name has no value (expected cortex.node_name=VALUE)"
        );
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let err = parse("ro cortex.node_name=\"a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: unterminated double quote in cortex.node_name=\"a b"
        );
    }

    #[test]
    fn unterminated_quote_hides_a_secret() {
        let err = parse("ro cortex.token=\"tok-Zq8vX3 quoted").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: unterminated double quote in cortex.token=<redacted>"
        );
    }

    #[test]
    fn lists_are_one_word() {
        assert_eq!(
            pairs("cortex.join=10.0.0.1:7071,10.0.0.2:7071 cortex.role=coordinator"),
            vec![
                pair("join", "10.0.0.1:7071,10.0.0.2:7071"),
                pair("role", "coordinator")
            ]
        );
    }
}
