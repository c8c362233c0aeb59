//! The recording format: lossless round trips, truncated tails, corrupt frames, foreign files.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use proptest::prelude::*;
use sluice::model::{Endpoint, Envelope, Source};
use sluice::record::{Codec, Item, RecordError, RecordingMeta, RecordingReader, RecordingWriter};

fn item_strategy() -> impl Strategy<Value = Item> {
    let envelope = (
        0..Endpoint::ALL.len(),
        any::<u64>(),
        "[a-z/]{0,12}",
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(e, t_ms, context, raw)| {
            Item::Envelope(Envelope {
                endpoint: Endpoint::ALL[e],
                t_ms,
                context,
                raw: Bytes::from(raw),
                seq: 0,
            })
        });
    let watermark = (0..Source::ALL.len(), any::<u64>()).prop_map(|(s, t_ms)| Item::Watermark {
        source: Source::ALL[s],
        t_ms,
    });
    prop_oneof![3 => envelope, 1 => watermark]
}

fn write(items: &[Item], codec: Codec) -> Vec<u8> {
    let meta = RecordingMeta {
        label: "test".into(),
        synthetic: true,
        writer: "tests".into(),
        sources: Vec::new(),
    };
    let mut w = RecordingWriter::new(Vec::new(), codec, &meta).unwrap();
    for item in items {
        match item {
            Item::Envelope(env) => w.write_envelope(env).unwrap(),
            Item::Watermark { source, t_ms } => w.write_watermark(*source, *t_ms).unwrap(),
        }
    }
    w.finish().unwrap()
}

/// Reads everything; returns the items and how it ended.
fn read_all(bytes: Vec<u8>) -> (Vec<Item>, Result<(), RecordError>) {
    let mut reader = match RecordingReader::from_bytes(Bytes::from(bytes)) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, Ok(())),
            Err(e) => return (items, Err(e)),
        }
    }
}

/// Sequence numbers count envelopes per source in file order.
fn with_seqs(items: &[Item]) -> Vec<Item> {
    let mut next = [0u64; Source::ALL.len()];
    items
        .iter()
        .map(|item| match item {
            Item::Envelope(env) => {
                let slot = &mut next[env.source().index()];
                let seq = *slot;
                *slot += 1;
                Item::Envelope(Envelope { seq, ..env.clone() })
            }
            other => other.clone(),
        })
        .collect()
}

proptest! {
    #[test]
    fn round_trips_losslessly(items in proptest::collection::vec(item_strategy(), 0..40), zstd in any::<bool>()) {
        let codec = if zstd { Codec::Zstd } else { Codec::None };
        let (back, end) = read_all(write(&items, codec));
        prop_assert!(end.is_ok(), "{end:?}");
        prop_assert_eq!(back, with_seqs(&items));
    }

    /// Cutting an uncompressed recording anywhere after the metadata keeps every whole frame
    /// before the cut and reports the truncation at the first incomplete frame.
    #[test]
    fn truncated_tail_keeps_the_intact_prefix(items in proptest::collection::vec(item_strategy(), 1..20), cut in any::<proptest::sample::Index>()) {
        let whole = write(&items, Codec::None);
        let min = 16 + 8 + 1 + serde_json::to_vec(&RecordingMeta { label: "test".into(), synthetic: true, writer: "tests".into(), sources: Vec::new() }).unwrap().len();
        let cut = min + cut.index(whole.len() - min);
        let (back, end) = read_all(whole[..cut].to_vec());
        let expected = with_seqs(&items);
        prop_assert!(back.len() <= expected.len());
        prop_assert_eq!(&back[..], &expected[..back.len()]);
        match end {
            Err(RecordError::Truncated { offset }) => prop_assert!(offset as usize <= cut),
            other => prop_assert!(false, "expected truncation, got {other:?}"),
        }
    }
}

/// Reads a recording from a file on disk (the path replay takes), returning how it ended.
fn read_file_end(bytes: &[u8]) -> Result<usize, RecordError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let mut reader = RecordingReader::open(file.path())?;
    let mut n = 0;
    while reader.next_item()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// Damage inside a compressed recording is corruption, not a truncated tail: near the end of
/// a small file (read whole at once) as much as in the middle, from disk and from memory.
#[test]
fn damaged_zstd_is_corruption_wherever_it_is() {
    let items: Vec<Item> = (0..300u64)
        .map(|i| {
            Item::Envelope(Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms: i,
                context: String::new(),
                raw: Bytes::from(format!(
                    r#"{{"parsed":[{{"id":"feed{}","price":{{"price":"{}","conf":"{}","expo":-8}}}}]}}"#,
                    i % 7,
                    1_000_000 + i * 37,
                    i * 3
                )),
                seq: 0,
            })
        })
        .collect();
    let whole = write(&items, Codec::Zstd);
    assert!(whole.len() < 64 << 10, "a small file: {}", whole.len());
    assert_eq!(read_file_end(&whole).unwrap(), items.len());
    for at in [whole.len() / 2, whole.len() - 40] {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x5a;
        let (back, end) = read_all(bytes.clone());
        assert!(
            matches!(end, Err(RecordError::Corrupt { .. })),
            "damage at {at} of {}, in memory: {end:?}",
            whole.len()
        );
        assert!(back.len() < items.len());
        let from_disk = read_file_end(&bytes);
        assert!(
            matches!(from_disk, Err(RecordError::Corrupt { .. })),
            "damage at {at} of {}, on disk: {from_disk:?}",
            whole.len()
        );
    }
}

#[test]
fn zstd_truncation_is_reported_too() {
    let items: Vec<Item> = (0..200)
        .map(|i| {
            Item::Envelope(Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms: i,
                context: String::new(),
                // Incompressible enough that the stream spans many zstd blocks.
                raw: Bytes::from(
                    (0..10_000u64)
                        .map(|j| (j.wrapping_mul(2654435761).wrapping_add(i) >> 7) as u8)
                        .collect::<Vec<u8>>(),
                ),
                seq: 0,
            })
        })
        .collect();
    let whole = write(&items, Codec::Zstd);
    let (back, end) = read_all(whole[..whole.len() * 2 / 3].to_vec());
    assert!(matches!(end, Err(RecordError::Truncated { .. })), "{end:?}");
    assert!(!back.is_empty() && back.len() < items.len());
    assert_eq!(back, with_seqs(&items)[..back.len()].to_vec());
}

#[test]
fn corrupt_middle_frame_names_its_offset() {
    let items: Vec<Item> = (0..10)
        .map(|i| {
            Item::Envelope(Envelope {
                endpoint: Endpoint::MeshPrice,
                t_ms: i,
                context: String::new(),
                raw: Bytes::from(vec![b'a'; 100]),
                seq: 0,
            })
        })
        .collect();
    let mut bytes = write(&items, Codec::None);
    // Every envelope frame here is the same size: find the fifth and flip a payload byte.
    let meta_len = bytes.len() - 10 * (8 + 1 + 1 + 8 + 2 + 100) - (8 + 1 + 8);
    let frame = 8 + 1 + 1 + 8 + 2 + 100;
    let fifth = meta_len + 4 * frame;
    bytes[fifth + 8 + 20] ^= 0xff;
    let (back, end) = read_all(bytes);
    assert_eq!(back.len(), 4);
    match end {
        Err(RecordError::Corrupt { offset, reason }) => {
            assert_eq!(offset as usize, fifth);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn absurd_frame_length_is_corruption_not_truncation() {
    let items = vec![
        Item::Watermark {
            source: Source::Hermes,
            t_ms: 1
        };
        3
    ];
    let mut bytes = write(&items, Codec::None);
    let meta_end = bytes.len() - 3 * (8 + 10) - (8 + 9);
    bytes[meta_end + 8 + 18 + 3] = 0x7f; // second watermark's length field, high byte
    let (back, end) = read_all(bytes);
    assert_eq!(back.len(), 1);
    assert!(matches!(end, Err(RecordError::Corrupt { .. })), "{end:?}");
}

#[test]
fn foreign_files_are_refused_clearly() {
    for (bytes, needle) in [
        (b"{\"not\":\"a recording\"}".to_vec(), "magic"),
        (b"SLUI".to_vec(), "header"),
        (
            [b"SLUICREC".as_slice(), &[9, 0, 0, 0, 0, 0, 0, 0]].concat(),
            "version 9",
        ),
    ] {
        match RecordingReader::from_bytes(Bytes::from(bytes)) {
            Err(RecordError::NotARecording { reason, .. }) => {
                assert!(reason.contains(needle), "{reason}")
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted a foreign file"),
        }
    }
}

#[test]
fn files_open_and_skip_unwanted_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rec");
    let items: Vec<Item> = (0..50)
        .flat_map(|i| {
            [
                Item::Envelope(Envelope {
                    endpoint: if i % 2 == 0 {
                        Endpoint::HermesStream
                    } else {
                        Endpoint::DexscreenerBoosts
                    },
                    t_ms: i,
                    context: "ctx".into(),
                    raw: Bytes::from(vec![b'z'; 1000 * (i as usize % 7)]),
                    seq: 0,
                }),
                Item::Watermark {
                    source: Source::Hermes,
                    t_ms: i,
                },
            ]
        })
        .collect();
    let bytes = write(&items, Codec::None);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let mut reader = RecordingReader::open(&path).unwrap();
    let mut kept = Vec::new();
    while let Some(item) = reader.next_where(|_, seq| seq % 3 == 1).unwrap() {
        kept.push(item);
    }
    let expected: Vec<Item> = with_seqs(&items)
        .into_iter()
        .filter(|item| match item {
            Item::Envelope(env) => env.seq % 3 == 1,
            Item::Watermark { .. } => true,
        })
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(
        reader.progress(),
        (bytes.len() as u64, Some(bytes.len() as u64))
    );
}

#[test]
fn bytes_in_memory_report_progress_over_their_own_length() {
    let items: Vec<Item> = (0..40)
        .map(|i| {
            Item::Envelope(Envelope {
                endpoint: Endpoint::HermesStream,
                t_ms: i,
                context: String::new(),
                raw: Bytes::from(vec![b'p'; 500 + 37 * i as usize]),
                seq: 0,
            })
        })
        .collect();
    for codec in [Codec::None, Codec::Zstd] {
        let bytes = write(&items, codec);
        let len = bytes.len() as u64;
        let counter = Arc::new(AtomicU64::new(0));
        let mut reader =
            RecordingReader::from_bytes_counted(Bytes::from(bytes), Arc::clone(&counter)).unwrap();
        let mut seen = vec![counter.load(Ordering::Relaxed)];
        while reader.next_item().unwrap().is_some() {
            seen.push(counter.load(Ordering::Relaxed));
        }
        // The end marker was read by the call that returned `None`.
        seen.push(counter.load(Ordering::Relaxed));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{codec:?}: {seen:?}");
        assert!(seen[0] < len / 4, "{codec:?} starts near 0: {seen:?}");
        let middle = seen[seen.len() / 2];
        assert!(
            middle > len / 4 && middle < len * 3 / 4,
            "{codec:?} is midway halfway: {middle} of {len}"
        );
        assert_eq!(*seen.last().unwrap(), len, "{codec:?} ends full");
        assert_eq!(reader.progress(), (len, Some(len)));
    }
}
