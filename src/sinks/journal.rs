//! The journal file: `journal.jsonl`, one canonical JSON line per event, in time order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use crate::model::journal::JournalLine;

/// Writes completed times to the journal file.
pub struct JournalWriter {
    out: BufWriter<File>,
    counts: BTreeMap<String, u64>,
    probe: Option<WriteProbe>,
    /// Times written since the last flush, for the probe.
    unflushed: Vec<u64>,
}

/// Told each time `t` whose lines have just reached the file (after the flush): how the
/// live benchmark measures when a line appears.
pub type WriteProbe = Arc<dyn Fn(u64) + Send + Sync>;

impl JournalWriter {
    /// Creates (or truncates) the journal at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(JournalWriter {
            out: BufWriter::with_capacity(1 << 16, File::create(path)?),
            counts: BTreeMap::new(),
            probe: None,
            unflushed: Vec::new(),
        })
    }

    /// The same writer, telling `probe` of every time it has written and flushed.
    pub fn with_probe(mut self, probe: WriteProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Writes every line of completed time `t`, canonically ordered: the lines are sorted by
    /// their bytes, which begin with the kind and then the event's key fields.
    pub fn write_time(&mut self, t: u64, lines: &mut [JournalLine]) -> io::Result<()> {
        lines.sort_unstable();
        if self.probe.is_some() {
            self.unflushed.push(t);
        }
        for line in lines.iter() {
            line.write_at(t, &mut self.out)?;
            match self.counts.get_mut(line.kind()) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(line.kind().to_owned(), 1);
                }
            }
        }
        Ok(())
    }

    /// Pushes buffered lines to the file, so a reader tailing it sees completed times.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some(probe) = &self.probe {
            for t in self.unflushed.drain(..) {
                probe(t);
            }
        }
        Ok(())
    }

    /// Lines written so far, by kind; resets the counts.
    pub fn take_counts(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.counts)
    }
}
