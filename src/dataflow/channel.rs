//! A live source's feed: what its task sent over a channel, numbered per source.

use std::sync::mpsc::{Receiver, TryRecvError};

use super::ingest::{Feed, FeedState};
use crate::model::Ingest;

/// Envelopes and watermarks from a live task. The task wakes the operator after each send;
/// the channel closing is the end of the source.
pub struct ChannelFeed {
    rx: Receiver<Ingest>,
    /// The next envelope's sequence number: the same numbering a recording's reader gives,
    /// so a replay spreads the envelopes over workers as this run does.
    next_seq: u64,
}

impl ChannelFeed {
    /// A feed reading `rx`.
    pub fn new(rx: Receiver<Ingest>) -> Self {
        ChannelFeed { rx, next_seq: 0 }
    }
}

impl Feed for ChannelFeed {
    fn pull(&mut self, budget: usize, out: &mut Vec<Ingest>) -> FeedState {
        for _ in 0..budget {
            match self.rx.try_recv() {
                Ok(Ingest::Envelope(mut env)) => {
                    env.seq = self.next_seq;
                    self.next_seq += 1;
                    out.push(Ingest::Envelope(env));
                }
                Ok(watermark) => out.push(watermark),
                Err(TryRecvError::Empty) => return FeedState::Waiting,
                Err(TryRecvError::Disconnected) => return FeedState::Closed,
            }
        }
        FeedState::Ready
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use bytes::Bytes;

    use super::*;
    use crate::model::{Endpoint, Envelope};

    #[test]
    fn numbers_envelopes_and_reports_the_end() {
        let (tx, rx) = channel();
        let env = |t_ms| {
            Ingest::Envelope(Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms,
                context: String::new(),
                raw: Bytes::new(),
                seq: 99,
            })
        };
        tx.send(env(1)).unwrap();
        tx.send(Ingest::Watermark(2)).unwrap();
        tx.send(env(3)).unwrap();
        let mut feed = ChannelFeed::new(rx);
        let mut out = Vec::new();
        assert_eq!(feed.pull(2, &mut out), FeedState::Ready);
        assert_eq!(feed.pull(10, &mut out), FeedState::Waiting);
        drop(tx);
        assert_eq!(feed.pull(10, &mut out), FeedState::Closed);
        let seqs: Vec<u64> = out
            .iter()
            .filter_map(|i| match i {
                Ingest::Envelope(e) => Some(e.seq),
                Ingest::Watermark(_) => None,
            })
            .collect();
        assert_eq!(seqs, [0, 1]);
    }
}
