//! Where a config error is: the file, the line of the offending key or value, and a hint.
//! Kept apart so that the `[risk]` compiler (policy/settings.rs) reports errors the same way
//! without depending on the rest of the config.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A config file that cannot be used; the message says where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config file {path}: {source}\n  hint: pass --config PATH, or copy proxy.toml from the mcp-audit-proxy repository"
    )]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a bad value.
    #[error("{}{}: {message}\n  hint: {hint}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The config path.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: Option<usize>,
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

/// The config text being validated, for errors that name the line.
pub(crate) struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// The config file.
    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    /// The folder relative paths resolve against.
    pub(crate) fn base(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(crate) fn invalid(&self, span: Range<usize>, message: &str, hint: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message: message.to_string(),
            hint: hint.to_string(),
        }
    }

    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_string();
        let hint = if message.starts_with("unknown field") {
            "check the spelling; every key is documented in the proxy.toml of the mcp-audit-proxy repository (unknown keys are refused so a typo cannot silently weaken the audit)"
        } else if message.starts_with("unknown variant") {
            "use one of the values listed above"
        } else if message.starts_with("invalid value") {
            "use a value in the range proxy.toml documents for this key (sizes and durations are whole numbers, 0 or more)"
        } else if message.starts_with("invalid type") {
            "check the value's type against the documentation in proxy.toml (numbers unquoted, names in quotes)"
        } else {
            "fix the TOML syntax at this line"
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: e.span().map(|s| self.line_of(s.start)),
            message,
            hint: hint.to_string(),
        }
    }

    /// [`Self::non_empty`] for an identity recorded as `user_id`: not of a pseudonym's form
    /// either ([`crate::store::personal::is_pseudonym`]).
    pub(crate) fn identity(
        &self,
        key: &str,
        value: Spanned<String>,
    ) -> Result<String, ConfigError> {
        let span = value.span();
        let text = self.non_empty(key, value)?;
        if crate::store::personal::is_pseudonym(&text) {
            return Err(self.invalid(
                span,
                &format!("`{key}` {}", crate::store::personal::PSEUDONYM_FORM),
                &format!("set `{key}` to the person's or service's own name"),
            ));
        }
        Ok(text)
    }

    pub(crate) fn non_empty(
        &self,
        key: &str,
        value: Spanned<String>,
    ) -> Result<String, ConfigError> {
        let text = value.get_ref();
        if text.trim().is_empty() || text.chars().any(char::is_control) {
            return Err(self.invalid(
                value.span(),
                &format!("`{key}` must be a non-empty string without control characters"),
                &format!("set `{key}` to a name, or remove the key to use the default"),
            ));
        }
        Ok(value.into_inner())
    }

    /// A path of the config: [`Self::non_empty`], and neither `~` nor `$VAR` in it, which
    /// only a shell expands. Taken as written, `store_dir = "~/audit"` made a folder named `~`
    /// beside the config (a trap for a later `rm -rf ~`).
    pub(crate) fn file_path(
        &self,
        key: &str,
        value: Spanned<String>,
    ) -> Result<String, ConfigError> {
        let span = value.span();
        let text = self.non_empty(key, value)?;
        let variable = text.match_indices('$').any(|(at, _)| {
            text[at + 1..]
                .chars()
                .next()
                .is_some_and(|c| c == '{' || c == '_' || c.is_ascii_alphabetic())
        });
        if text.starts_with('~') || variable {
            return Err(self.invalid(
                span,
                &format!("`{key}` = {text:?}: `~` and `$VARIABLES` are not expanded in the config"),
                "write the path out in full (/home/you/...), or relative to the config file's folder",
            ));
        }
        Ok(text)
    }

    pub(crate) fn ranged(
        &self,
        key: &str,
        value: Option<Spanned<u64>>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        match value {
            Some(v) => self.in_range(key, v, range, Some(default)),
            None => Ok(default),
        }
    }

    /// A number that must lie in `range`; the hint names the default, if the key has one.
    pub(crate) fn in_range(
        &self,
        key: &str,
        value: Spanned<u64>,
        range: std::ops::RangeInclusive<u64>,
        default: Option<u64>,
    ) -> Result<u64, ConfigError> {
        if range.contains(value.get_ref()) {
            return Ok(value.into_inner());
        }
        Err(self.invalid(
            value.span(),
            &format!(
                "`{key}` = {} is out of range {}..={}",
                value.get_ref(),
                range.start(),
                range.end()
            ),
            &match default {
                Some(d) => {
                    format!("choose a value in range, or remove the key to use the default ({d})")
                }
                None => "choose a value in range".to_string(),
            },
        ))
    }
}
