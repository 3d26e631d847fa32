//! Progress bars for the long commands (`verify`, `export`, `reindex`; issue 9 item 10): a bar
//! with the rate and the time left, drawn on standard error only when it is a terminal (the
//! bar is hidden otherwise, so pipes, files and tests see nothing of it), by `indicatif`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` bytes (journal segments read), labelled `what`.
pub fn bytes(total: u64, what: &str) -> ProgressBar {
    bar(
        total,
        what,
        "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
    )
}

const ITEMS: &str = "{msg:>9} [{bar:30}] {human_pos}/{human_len} events {per_sec}, {eta} left";

/// A bar over `total` items (events), labelled `what`.
pub fn items(total: u64, what: &str) -> ProgressBar {
    bar(total, what, ITEMS)
}

fn bar(total: u64, what: &str, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // The templates are constants: a bad one is a bug caught by the test below, not a
    // reason to fail the command.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// The bytes of every journal segment of the store whose journals are in `journal_root`
/// (what `verify`, `export` and `reindex` read), for a bar's length.
pub fn journal_bytes(journal_root: &std::path::Path) -> u64 {
    use crate::store::{journal, journals};
    let Ok(ids) = journals::list(journal_root) else {
        return 0;
    };
    ids.iter()
        .flat_map(|id| {
            let dir = id.dir(journal_root);
            journal::list_segments(&dir)
                .unwrap_or_default()
                .into_iter()
                .map(move |n| journal::segment_path(&dir, n))
        })
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse_and_the_bars_are_hidden_without_a_terminal() {
        for t in [
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
            ITEMS,
        ] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        let b = bytes(10, "verify");
        b.inc(5);
        assert_eq!(b.position(), 5);
        use std::io::IsTerminal;
        assert_eq!(b.is_hidden(), !std::io::stderr().is_terminal());
    }
}
