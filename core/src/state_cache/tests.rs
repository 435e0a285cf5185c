use proptest::prelude::*;

use super::*;
use crate::keys::resolve_key;
use crate::upload::{Sha256, Sidecar};

/// A clock reading well past every stamp below.
const NOW: i128 = 1_000 * 1_000_000_000;
/// A stamp time old enough to be settled at [`NOW`].
const OLD: i128 = NOW - SETTLE_NS - 1;

fn target(key: &str) -> Target {
    resolve_key(key.as_bytes()).unwrap()
}

fn stamp(kind: StampKind, ino: u64, size: u64, time: i128) -> Stamp {
    Stamp {
        kind,
        dev: 7,
        ino,
        mode: 0o100_644,
        size,
        mtime_ns: time,
        ctime_ns: time,
    }
}

/// A complete file of 1024 bytes with a trusted sidecar, stamped at `time`.
fn complete(time: i128) -> (Stamps, FileState) {
    let hex = Sha256::of(b"x").to_hex();
    let state = FileState {
        entry: Entry::File {
            size: 1024,
            mtime_ns: time,
        },
        sidecar: Some(Sidecar {
            content: hex.clone().into_bytes(),
            mtime_ns: time,
        }),
        partial: None,
        target: None,
        total: None,
    };
    let stamps = Stamps {
        dir: stamp(StampKind::Directory, 1, 4096, time),
        entry: Some(stamp(StampKind::File, 2, 1024, time)),
        sidecar: Some(stamp(StampKind::File, 3, 64, time)),
    };
    (stamps, state)
}

#[test]
fn a_settled_complete_state_is_kept_and_returned_under_the_same_stamps() {
    let mut cache = StateCache::new_default();
    let key = target("models/m/w.bin");
    let (stamps, state) = complete(OLD);
    assert!(cache.offer(&key, &stamps, &state, NOW));
    assert_eq!(cache.get(&key, &stamps), Some(state));
    assert_eq!(cache.len(), 1);
    // Another key, or the same path in another root, is not the kept one.
    assert_eq!(cache.get(&target("models/m/v.bin"), &stamps), None);
    assert_eq!(cache.get(&target("data/m/w.bin"), &stamps), None);
}

#[test]
fn any_changed_stamp_field_is_a_miss() {
    let mut cache = StateCache::new_default();
    let key = target("models/w.bin");
    let (stamps, state) = complete(OLD);
    assert!(cache.offer(&key, &stamps, &state, NOW));
    let bumps: [fn(&mut Stamp); 7] = [
        |s| s.kind = StampKind::Link,
        |s| s.dev += 1,
        |s| s.ino += 1,
        |s| s.mode ^= 0o4,
        |s| s.size += 1,
        |s| s.mtime_ns += 1,
        |s| s.ctime_ns += 1,
    ];
    for bump in bumps {
        for which in 0..3 {
            let mut seen = stamps;
            match which {
                0 => bump(&mut seen.dir),
                1 => bump(seen.entry.as_mut().unwrap()),
                _ => bump(seen.sidecar.as_mut().unwrap()),
            }
            assert_eq!(
                cache.get(&key, &seen),
                None,
                "stamp {which} changed: {seen:?}"
            );
        }
    }
    let mut gone = stamps;
    gone.sidecar = None;
    assert_eq!(cache.get(&key, &gone), None, "sidecar removed");
    gone.entry = None;
    assert_eq!(cache.get(&key, &gone), None, "entry removed");
}

#[test]
fn a_stamp_within_the_settle_window_keeps_nothing() {
    let key = target("models/w.bin");
    for fresh in [NOW, NOW - SETTLE_NS + 1, NOW + 1] {
        let (base, state) = complete(OLD);
        let variants: [fn(&mut Stamps, i128); 6] = [
            |s, t| s.dir.mtime_ns = t,
            |s, t| s.dir.ctime_ns = t,
            |s, t| s.entry.as_mut().unwrap().ctime_ns = t,
            |s, t| s.sidecar.as_mut().unwrap().ctime_ns = t,
            |s, t| s.sidecar.as_mut().unwrap().mtime_ns = t,
            |s, t| s.entry.as_mut().unwrap().mtime_ns = t,
        ];
        for change in variants {
            let mut cache = StateCache::new_default();
            let mut stamps = base;
            change(&mut stamps, fresh);
            // The state read agrees with its stamps, so only the settle rule refuses it.
            let mut state = state.clone();
            if let Some(sidecar) = &mut state.sidecar {
                sidecar.mtime_ns = stamps.sidecar.unwrap().mtime_ns;
            }
            if let Entry::File { mtime_ns, .. } = &mut state.entry {
                *mtime_ns = stamps.entry.unwrap().mtime_ns;
            }
            assert!(stamps.describe(&state), "{stamps:?}");
            assert!(!cache.offer(&key, &stamps, &state, NOW), "{stamps:?}");
            assert!(cache.is_empty());
        }
    }
    // Exactly SETTLE_NS old is settled.
    let (stamps, state) = complete(NOW - SETTLE_NS);
    assert!(StateCache::new_default().offer(&key, &stamps, &state, NOW));
}

#[test]
fn states_that_must_be_read_every_time_are_never_kept() {
    let key = target("models/w.bin");
    let (stamps, state) = complete(OLD);
    let mut cases: Vec<(&str, Stamps, FileState)> = Vec::new();

    let mut uploading = state.clone();
    uploading.partial = Some(10);
    cases.push(("upload in progress", stamps, uploading));

    let mut untrusted = state.clone();
    untrusted.sidecar.as_mut().unwrap().mtime_ns = OLD - 1; // older than the file
    let mut untrusted_stamps = stamps;
    untrusted_stamps.sidecar.as_mut().unwrap().mtime_ns = OLD - 1;
    cases.push(("needs a hash", untrusted_stamps, untrusted));

    let mut linked = stamps;
    linked.entry.as_mut().unwrap().kind = StampKind::Link;
    cases.push(("entry is a link", linked, state.clone()));

    let mut linked_sidecar = stamps;
    linked_sidecar.sidecar.as_mut().unwrap().kind = StampKind::Link;
    cases.push(("sidecar is a link", linked_sidecar, state.clone()));

    let mut not_a_dir = stamps;
    not_a_dir.dir.kind = StampKind::Link;
    cases.push((
        "directory stamp is not a directory",
        not_a_dir,
        state.clone(),
    ));

    let mut missing = state.clone();
    missing.entry = Entry::Missing;
    let mut missing_stamps = stamps;
    missing_stamps.entry = None;
    cases.push(("missing entry", missing_stamps, missing));

    let mut dir = state.clone();
    dir.entry = Entry::Directory;
    cases.push(("directory entry", stamps, dir));

    // Stamps that disagree with the state: it changed between the two reads.
    let mut resized = stamps;
    resized.entry.as_mut().unwrap().size = 1;
    cases.push(("entry size differs", resized, state.clone()));
    let mut retimed = stamps;
    retimed.entry.as_mut().unwrap().mtime_ns = OLD - 7;
    cases.push(("entry mtime differs", retimed, state.clone()));
    let mut sidecar_appeared = stamps;
    sidecar_appeared.sidecar = None;
    cases.push((
        "sidecar stamp absent, sidecar read",
        sidecar_appeared,
        state.clone(),
    ));
    let mut sidecar_vanished = state.clone();
    sidecar_vanished.sidecar = None;
    cases.push(("sidecar stamp present, none read", stamps, sidecar_vanished));

    for (what, stamps, state) in cases {
        let mut cache = StateCache::new_default();
        assert!(!cache.offer(&key, &stamps, &state, NOW), "{what}");
        assert!(cache.is_empty(), "{what}");
    }
}

#[test]
fn a_refused_offer_drops_the_state_kept_before() {
    let mut cache = StateCache::new_default();
    let key = target("models/w.bin");
    let (stamps, state) = complete(OLD);
    assert!(cache.offer(&key, &stamps, &state, NOW));
    let mut uploading = state.clone();
    uploading.partial = Some(1);
    assert!(!cache.offer(&key, &stamps, &uploading, NOW));
    assert_eq!(cache.get(&key, &stamps), None);
    assert!(cache.offer(&key, &stamps, &state, NOW));
    cache.forget(&key);
    assert_eq!(cache.get(&key, &stamps), None);
    assert!(cache.is_empty());
}

#[test]
fn the_oldest_state_goes_first_when_full_and_zero_capacity_keeps_none() {
    let mut cache = StateCache::new(2);
    let (stamps, state) = complete(OLD);
    let [a, b, c] = [target("models/a"), target("models/b"), target("models/c")];
    assert!(cache.offer(&a, &stamps, &state, NOW));
    assert!(cache.offer(&b, &stamps, &state, NOW));
    // Offering `a` again makes it the newest.
    assert!(cache.offer(&a, &stamps, &state, NOW));
    assert!(cache.offer(&c, &stamps, &state, NOW));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&b, &stamps).is_none());
    assert!(cache.get(&a, &stamps).is_some());
    assert!(cache.get(&c, &stamps).is_some());

    let mut none = StateCache::new(0);
    assert!(!none.offer(&a, &stamps, &state, NOW));
    assert!(none.is_empty());
}

fn arb_stamp() -> impl Strategy<Value = Stamp> {
    (
        prop_oneof![
            Just(StampKind::File),
            Just(StampKind::Directory),
            Just(StampKind::Link),
            Just(StampKind::Other)
        ],
        0..3_u64,
        0..3_u64,
        0..3_u64,
        (0..4_i128, 0..4_i128),
    )
        .prop_map(|(kind, ino, size, mode, (m, c))| Stamp {
            kind,
            dev: 1,
            ino,
            mode: u32::try_from(mode).unwrap(),
            size,
            mtime_ns: OLD - m,
            ctime_ns: OLD - c,
        })
}

fn arb_stamps() -> impl Strategy<Value = Stamps> {
    (
        arb_stamp(),
        prop::option::of(arb_stamp()),
        prop::option::of(arb_stamp()),
    )
        .prop_map(|(dir, entry, sidecar)| Stamps {
            dir,
            entry,
            sidecar,
        })
}

fn arb_state() -> impl Strategy<Value = FileState> {
    (
        prop_oneof![
            Just(Entry::Missing),
            Just(Entry::Directory),
            (0..3_u64, 0..4_i128).prop_map(|(size, m)| Entry::File {
                size,
                mtime_ns: OLD - m
            }),
        ],
        prop::option::of((any::<bool>(), 0..4_i128)),
        prop::option::of(0..3_u64),
    )
        .prop_map(|(entry, sidecar, partial)| FileState {
            entry,
            sidecar: sidecar.map(|(valid, m)| Sidecar {
                content: if valid {
                    Sha256::of(b"y").to_hex().into_bytes()
                } else {
                    b"junk".to_vec()
                },
                mtime_ns: OLD - m,
            }),
            partial,
            target: None,
            total: None,
        })
}

proptest! {
    /// Whatever is offered and looked up, a hit returns exactly the state offered last for
    /// the key under exactly the stamps looked up, and that state was a final `HEAD` answer
    /// for a regular file without an upload in progress.
    #[test]
    fn a_hit_is_always_the_last_kept_state_under_identical_stamps(
        ops in prop::collection::vec((0..3_usize, arb_stamps(), arb_state(), any::<bool>()), 1..40),
    ) {
        let keys = [target("models/a"), target("models/d/b"), target("c")];
        let mut cache = StateCache::new(2);
        let mut model: Vec<Option<(Stamps, FileState)>> = vec![None, None, None];
        for (k, stamps, state, offer) in ops {
            if offer {
                if cache.offer(&keys[k], &stamps, &state, NOW) {
                    prop_assert!(state.partial.is_none());
                    let is_file = matches!(state.entry, Entry::File { .. });
                    prop_assert!(is_file);
                    prop_assert_ne!(upload::answer_head(&state), HeadAnswer::NeedHash);
                    model[k] = Some((stamps, state));
                } else {
                    model[k] = None;
                }
            } else if let Some(hit) = cache.get(&keys[k], &stamps) {
                let (kept_stamps, kept_state) = model[k].as_ref().expect("a hit was offered");
                prop_assert_eq!(kept_stamps, &stamps);
                prop_assert_eq!(kept_state, &hit);
            }
            prop_assert!(cache.len() <= 2);
        }
    }
}
