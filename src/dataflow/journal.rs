//! The journal sink: every event line goes to worker 0, which writes each time once complete.

use std::collections::BTreeMap;
use std::sync::Arc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use tracing::error;

use super::stats::RunStats;
use crate::model::journal::JournalLine;
use crate::sinks::journal::JournalWriter;

/// Writes lines for every time the frontier has passed, in time order and canonical order
/// within a time. Only the worker holding `writer` writes; every line is routed to worker 0.
/// With `flush_each_time`, the file is flushed after each write (a live journal can be tailed).
pub fn journal_sink<'scope>(
    lines: StreamVec<'scope, u64, JournalLine>,
    mut writer: Option<JournalWriter>,
    flush_each_time: bool,
    stats: Arc<RunStats>,
) {
    let mut staged: BTreeMap<u64, Vec<JournalLine>> = BTreeMap::new();
    let mut failed = false;
    let mut finished = false;
    lines.sink(
        Exchange::new(|_: &JournalLine| 0),
        "Journal",
        move |(input, frontier)| {
            input.for_each_time(|cap, data| {
                let slot = staged.entry(*cap.time()).or_default();
                for batch in data {
                    slot.append(batch);
                }
            });
            let Some(out) = writer.as_mut() else {
                staged.clear();
                return;
            };
            let mut wrote = false;
            while let Some(entry) = staged.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let t = *entry.key();
                let mut lines = entry.remove();
                if let Err(e) = out.write_time(t, &mut lines) {
                    fail(&stats, &mut failed, &e);
                }
                wrote = true;
            }
            let ended = frontier.is_empty() && !finished;
            if (wrote && flush_each_time) || ended {
                finished |= ended;
                if let Err(e) = out.flush() {
                    fail(&stats, &mut failed, &e);
                }
            }
            if wrote {
                stats.events(&out.take_counts());
            }
        },
    );
}

fn fail(stats: &RunStats, failed: &mut bool, e: &std::io::Error) {
    if !*failed {
        *failed = true;
        error!(error = %e, "writing the journal failed");
        stats.fail(format!("writing the journal failed: {e}"));
    }
}
