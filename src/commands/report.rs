//! `report executive|detailed` (issue 10 item 5): reads the store once for the period, the
//! period before it and the detectors' history ([`crate::report::gather`]), and writes the
//! report as HTML, Markdown or JSON to stdout or to `--out`.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::analytics::compliance;
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::report::render::{self, RenderError};
use crate::report::{self as reports, DETECTION_LIMIT_CALLS};
use crate::store::StoreError;

use super::analytics::{AnalyticsError, ms, window};

/// Errors of `report`, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the store or the window failed.
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    /// A template did not render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The compliance checks could not read the store.
    #[error(transparent)]
    Compliance(#[from] compliance::ComplianceError),
    /// The output file cannot be written.
    #[error("cannot write the report to {}: {source}\n  hint: give a file whose folder exists and is writable (a file is written to a temporary file beside it, then renamed over it), or a FIFO or device that can be written", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<StoreError> for ReportError {
    fn from(e: StoreError) -> Self {
        ReportError::Analytics(AnalyticsError::Store(e))
    }
}

/// Writes `text` to `path` whole or not at all: a temporary file beside it (a new name, created
/// exclusively: a file or link planted under a guessed name is not written through), synced,
/// then renamed over it. A symbolic link is followed (the file it names is replaced, the link
/// kept; the new file is readable by its owner only, a replaced one keeps its permissions). A
/// path that is not a regular file (a FIFO, a device), or any path under `/dev` or `/proc`, is
/// written to as it is (`/dev/stdout` and `/dev/stderr` as the process's own; others appended
/// to): renaming over it would replace it (helper-94 F3: `--out /dev/full` run as root
/// replaced the device with a file and said it wrote the report). A dangling link or a folder
/// is an error.
fn write_file(path: &std::path::Path, text: &str) -> Result<(), ReportError> {
    use std::io::ErrorKind;
    let fail = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    // `/dev/stdout` (a link to `/proc/self/fd/1`) names whatever the shell redirected standard
    // output to: resolved, a redirected file would be replaced (and `>>`'s content lost), and
    // opened again it would be written from its start. The process's own standard output and
    // error are written to as they are; other paths under /dev and /proc are appended to,
    // never replaced (review helper-97).
    let own = |fd: u8| {
        [format!("/dev/fd/{fd}"), format!("/proc/self/fd/{fd}")]
            .iter()
            .any(|p| path == std::path::Path::new(p))
    };
    if path == std::path::Path::new("/dev/stdout") || own(1) {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(fail);
    }
    if path == std::path::Path::new("/dev/stderr") || own(2) {
        return std::io::stderr().write_all(text.as_bytes()).map_err(fail);
    }
    // Written where it is, never renamed over (appending changes nothing for a FIFO or a
    // device, and keeps what a file named under /proc held).
    let in_place = || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(fail)?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.flush())
            .map_err(fail)
    };
    if path.starts_with("/dev") || path.starts_with("/proc") {
        return in_place();
    }
    let target = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(fail(std::io::Error::new(
                ErrorKind::IsADirectory,
                "it is a folder: give a file name",
            )));
        }
        Ok(m) if !m.is_file() => return in_place(),
        Ok(_) => std::fs::canonicalize(path).map_err(fail)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(fail(std::io::Error::new(
                    ErrorKind::NotFound,
                    "it is a symbolic link to a file that does not exist",
                )));
            }
            path.to_path_buf()
        }
        Err(e) => return Err(fail(e)),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", ulid::Ulid::generate()));
    // Readable by its owner only while written; a file it replaces keeps its permissions (a
    // report names users: one kept private stays private, review helper-97).
    let kept = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Some(p) = kept {
            f.set_permissions(p)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// `report`: returns the exit code.
pub fn run(args: &ReportArgs, config: &Config, out: &mut impl Write) -> Result<i32, ReportError> {
    let (from, to) = window(&args.window(), Duration::from_secs(30 * 86_400))?;
    let root = &config.audit.store_dir;
    if !root.join("journal").is_dir() {
        return Err(AnalyticsError::NoStore { path: root.clone() }.into());
    }
    super::analytics::check_losses(root, args.allow_damaged)?;
    // The same assessment as `compliance --regulation all` over the period (one pass for the
    // three regulations, in the same pass as the calls; the chain walk unless --no-verify).
    let now = SystemTime::now();
    let assess = compliance::ComplianceInput {
        root,
        config,
        since: from,
        until: to,
        now,
        verify_chain: !args.no_verify,
    };
    let (report, read) = reports::gather(
        root,
        reports::Request {
            assess: Some(&assess),
            no_compliance: "",
            kind: args.kind,
            from_ms: ms(from),
            to_ms: ms(to),
            now_ms: ms(now),
            baseline_days: config.analytics.baseline_days,
            context: &config.analytics.context,
            detection_limit: DETECTION_LIMIT_CALLS,
        },
    )?;
    super::analytics::checked_read(root, &read, args.allow_damaged)?;
    super::analytics::check_losses(root, args.allow_damaged)?;
    let text = render::render(&report, args.format)?;
    match &args.out {
        Some(path) => {
            write_file(path, &text)?;
            writeln!(
                out,
                "wrote the {} report ({} calls, {} findings) to {}",
                match args.kind {
                    reports::model::Kind::Executive => "executive",
                    reports::model::Kind::Detailed => "detailed",
                },
                report.totals.calls,
                if report.findings.assessed {
                    report.findings.total.to_string()
                } else {
                    "not assessed".into()
                },
                path.display()
            )
            .map_err(AnalyticsError::Output)?;
        }
        None => out
            .write_all(text.as_bytes())
            .map_err(AnalyticsError::Output)?,
    }
    out.flush().map_err(AnalyticsError::Output)?;
    Ok(0)
}
