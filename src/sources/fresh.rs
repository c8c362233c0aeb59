//! Which Hermes updates are new: the stream and the REST poller overlap around every reconnect,
//! and each publish time must reach the dataflow exactly once.
//!
//! [`FreshUpdates`] remembers the newest publish time per feed across both paths. A document
//! whose feeds are all new passes untouched (the common case, and the only one on a healthy
//! stream); one whose feeds were all seen is dropped; a mixed one is rewritten to hold only the
//! new feeds. The rewritten bytes are what the dataflow and the recording get, so a replay sees
//! exactly what the live run saw.
//!
//! A document this reader cannot make sense of passes untouched: the dataflow's parser then
//! reports it as invalid input, with its location, rather than it vanishing here.
//!
//! ```
//! use sluice::sources::fresh::{Admission, FreshUpdates};
//! let doc = |t: i64| format!(r#"{{"parsed":[{{"id":"aa","price":{{"publish_time":{t}}}}}]}}"#);
//! let mut fresh = FreshUpdates::default();
//! assert!(matches!(fresh.admit(doc(10).as_bytes()), Admission::Pass { new: 1 }));
//! assert!(matches!(fresh.admit(doc(10).as_bytes()), Admission::Drop { seen: 1 }));
//! assert!(matches!(fresh.admit(doc(11).as_bytes()), Admission::Pass { new: 1 }));
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::Deserialize;

/// What to do with one document.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Hand it over as it is; `new` feeds in it were new.
    Pass {
        /// New feed updates.
        new: usize,
    },
    /// Every feed in it was seen before (or superseded): hand nothing over.
    Drop {
        /// Feed updates already seen.
        seen: usize,
    },
    /// Hand over these bytes instead: the document with only its new feeds.
    Rewrite {
        /// The rewritten document.
        bytes: Bytes,
        /// New feed updates kept.
        new: usize,
        /// Feed updates dropped as seen.
        seen: usize,
    },
}

/// The newest publish time seen per feed.
#[derive(Debug, Default)]
pub struct FreshUpdates {
    newest: FxHashMap<String, i64>,
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow)]
    parsed: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    price: Published,
}

#[derive(Deserialize)]
struct Published {
    publish_time: i64,
}

/// Feed ids compare without `0x` and case.
fn feed_key(id: &str) -> String {
    let id = id
        .strip_prefix("0x")
        .or_else(|| id.strip_prefix("0X"))
        .unwrap_or(id);
    id.to_ascii_lowercase()
}

impl FreshUpdates {
    /// Decides on one `PriceUpdate` document (an SSE event's data or a `/latest` body), and
    /// remembers what it admits.
    pub fn admit(&mut self, raw: &[u8]) -> Admission {
        let Ok(doc) = serde_json::from_slice::<Doc<'_>>(raw) else {
            return Admission::Pass { new: 0 };
        };
        let entries = doc.parsed.unwrap_or_default();
        let mut keep = Vec::with_capacity(entries.len());
        for entry in &entries {
            let key = feed_key(&entry.id);
            let time = entry.price.publish_time;
            let is_new = self.newest.get(&key).is_none_or(|&seen| time > seen);
            if is_new {
                self.newest.insert(key, time);
            }
            keep.push(is_new);
        }
        let new = keep.iter().filter(|k| **k).count();
        let seen = keep.len() - new;
        if seen == 0 {
            return Admission::Pass { new };
        }
        if new == 0 {
            return Admission::Drop { seen };
        }
        match rewrite(raw, &keep) {
            Some(bytes) => Admission::Rewrite { bytes, new, seen },
            // The typed read above succeeded, so the generic one does too; should it not,
            // passing everything on loses nothing (the dataflow tolerates a repeat).
            None => Admission::Pass { new },
        }
    }
}

/// `raw` with only the `parsed` entries marked in `keep`.
fn rewrite(raw: &[u8], keep: &[bool]) -> Option<Bytes> {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw).ok()?;
    let serde_json::Value::Array(entries) = doc.get_mut("parsed")? else {
        return None;
    };
    if entries.len() != keep.len() {
        return None;
    }
    let mut flags = keep.iter();
    entries.retain(|_| flags.next().copied().unwrap_or(true));
    serde_json::to_vec(&doc).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(entries: &[(&str, i64)]) -> String {
        let parsed: Vec<String> = entries
            .iter()
            .map(|(id, t)| {
                format!(
                    r#"{{"id":"{id}","price":{{"price":"1","conf":"1","expo":-8,"publish_time":{t}}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"binary":{{"encoding":"hex","data":["00"]}},"parsed":[{}]}}"#,
            parsed.join(",")
        )
    }

    #[test]
    fn mixed_documents_keep_only_new_feeds() {
        let mut fresh = FreshUpdates::default();
        assert_eq!(
            fresh.admit(doc(&[("aa", 10), ("bb", 10)]).as_bytes()),
            Admission::Pass { new: 2 }
        );
        // The poller's view after a reconnect: aa unchanged, bb moved on, cc is new.
        let Admission::Rewrite { bytes, new, seen } =
            fresh.admit(doc(&[("0xAA", 10), ("bb", 11), ("cc", 5)]).as_bytes())
        else {
            panic!("expected a rewrite");
        };
        assert_eq!((new, seen), (2, 1));
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let ids: Vec<&str> = value["parsed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["bb", "cc"]);
        assert_eq!(value["binary"]["data"][0], "00");
        // An older publish time is superseded, not new.
        assert_eq!(
            fresh.admit(doc(&[("bb", 9)]).as_bytes()),
            Admission::Drop { seen: 1 }
        );
    }

    #[test]
    fn the_same_feed_twice_in_one_document_counts_once() {
        let mut fresh = FreshUpdates::default();
        let Admission::Rewrite { new, seen, .. } =
            fresh.admit(doc(&[("aa", 10), ("aa", 10)]).as_bytes())
        else {
            panic!("expected a rewrite");
        };
        assert_eq!((new, seen), (1, 1));
    }

    #[test]
    fn unreadable_documents_pass_for_the_parser_to_report() {
        let mut fresh = FreshUpdates::default();
        assert_eq!(fresh.admit(b"not json"), Admission::Pass { new: 0 });
        assert_eq!(
            fresh.admit(br#"{"parsed":[{"id":"aa"}]}"#),
            Admission::Pass { new: 0 }
        );
    }
}
