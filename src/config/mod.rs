//! Configuration: TOML schema, defaults, validation with `FILE:LINE:COL` errors, and the reload diff.
//!
//! `load_str` is a pure function from text to a validated [`Config`] or to every error that could be found.
//! Schema errors (unknown keys, wrong types) come from serde, which stops at the first; the loader then
//! comments out the offending line and tries again, so one run reports them all, and still runs the semantic
//! checks on what remains.

mod diff;
mod raw;
mod types;
mod validate;

pub use diff::{ConfigDiff, NamedChanges, diff};
pub use types::*;
pub use validate::{is_e164, parse_target_str as parse_target};

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The loopback demo configuration used by `tollgate run` without `--config` and by the README.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// One problem in a configuration file, at a 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every error found in one file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Byte-offset errors collected during loading, turned into line/column at the end.
#[derive(Default)]
pub(crate) struct Collector {
    pub errors: Vec<(usize, String)>,
}

impl Collector {
    pub fn at(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.errors.push((span.start, msg.into()));
    }
}

/// Upper bound on re-parses after schema errors, so a pathological file cannot make loading quadratic.
const MAX_SCHEMA_RETRIES: usize = 64;

/// Parses and validates `text`; `file` is only used to label errors.
pub fn load_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Collector::default();
    let mut work = text.to_owned();
    let mut removed_keys: Vec<String> = Vec::new();
    let mut parsed = None;
    for _ in 0..MAX_SCHEMA_RETRIES {
        match toml::from_str::<raw::RawConfig>(&work) {
            Ok(r) => {
                parsed = Some(r);
                break;
            }
            Err(e) => {
                let msg = e.message().trim().to_owned();
                // A required field we ourselves commented out: not the operator's error, already reported.
                if let Some(k) = missing_field(&msg)
                    && removed_keys.iter().any(|r| r == k)
                {
                    break;
                }
                let start = e.span().map(|s| s.start).unwrap_or(0);
                c.at(start..start, msg);
                let Some(key) = comment_out_line(&mut work, start) else {
                    break;
                };
                removed_keys.push(key);
                // Commenting out a line of a multi-line value breaks the syntax: stop rather than report an
                // error that is ours.
                if work.parse::<toml::Table>().is_err() {
                    break;
                }
            }
        }
    }
    let result = parsed.map(|r| validate::validate(&r, &work, &mut c));
    finish(text, file, c, result)
}

/// Reads and validates a file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 1,
            col: 1,
            message: format!("cannot read: {e}"),
        }])),
    }
}

fn finish(
    text: &str,
    file: &Path,
    mut c: Collector,
    result: Option<Config>,
) -> Result<Config, ConfigErrors> {
    match result {
        Some(cfg) if c.errors.is_empty() => Ok(cfg),
        _ => {
            if c.errors.is_empty() {
                c.errors.push((0, "configuration could not be read".into()));
            }
            c.errors.sort_by_key(|(o, _)| *o);
            c.errors.dedup();
            Err(ConfigErrors(
                c.errors
                    .into_iter()
                    .map(|(off, message)| {
                        let (line, col) = line_col(text, off);
                        ConfigError {
                            file: file.to_owned(),
                            line,
                            col,
                            message,
                        }
                    })
                    .collect(),
            ))
        }
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..off].chars().count() + 1;
    (line, col)
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Replaces the first character of the `key = value` line holding `offset` with `#`, keeping every byte offset
/// of the rest of the file. Returns the key, or `None` when the line is not a key/value line.
fn comment_out_line(work: &mut String, offset: usize) -> Option<String> {
    let off = offset.min(work.len());
    let start = work.get(..off)?.rfind('\n').map_or(0, |i| i + 1);
    let line = work.get(start..)?.split('\n').next()?;
    let indent = line.len() - line.trim_start().len();
    let body = line.trim_start();
    if body.is_empty() || body.starts_with('[') || body.starts_with('#') {
        return None;
    }
    let key = body.split('=').next()?.trim().trim_matches('"').to_owned();
    if key.is_empty() || !body.contains('=') {
        return None;
    }
    let pos = start + indent;
    // The first character of a bare or quoted key is ASCII, so a one-byte replacement keeps offsets.
    if !work.is_char_boundary(pos + 1) {
        return None;
    }
    work.replace_range(pos..pos + 1, "#");
    Some(key)
}

#[cfg(test)]
mod tests;
