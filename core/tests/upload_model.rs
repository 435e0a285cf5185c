//! The upload state machine of security.md §6.3, checked against its reference model.
//!
//! proptest-state-machine generates sequences of full and range uploads, `HEAD`s, spoiled
//! sidecars, crashes at every step and full disks; each step runs on the reference
//! [`Model`] and on the in-memory [`Disk`] (an adapter over the core's public API), and after
//! every step they must agree (INV-1…INV-5, HR-C06). The same model backs the `plan_upload`
//! fuzz target, which explores longer and stranger sequences.

use nodegate_core::upload::Sha256;
use nodegate_model::{CrashPoint, Disk, Expect, Fault, Model, Op, Spoil};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// The reference state: the model, what the last step must produce, and the last file a range
/// upload worked on (so the next steps can resume it).
#[derive(Debug, Clone)]
struct State {
    model: Model,
    expect: Expect,
    source: Option<Vec<u8>>,
}

/// One step: the operation, and for a range upload the whole file its chunk belongs to.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    source: Option<Vec<u8>>,
}

fn fault() -> BoxedStrategy<Fault> {
    prop_oneof![
        12 => Just(Fault::None),
        1 => (0_usize..32).prop_map(Fault::DiskFull),
        1 => (0_usize..32).prop_map(|at| Fault::Crash(CrashPoint::MidBody(at))),
        1 => Just(Fault::Crash(CrashPoint::BeforePublish)),
        1 => Just(Fault::Crash(CrashPoint::AfterRename)),
        1 => Just(Fault::Crash(CrashPoint::AfterSidecar)),
    ]
    .boxed()
}

/// Contents worth uploading: fresh bytes, the file being uploaded, or the complete file.
fn content(state: &State, min: usize) -> BoxedStrategy<Vec<u8>> {
    let fresh = prop::collection::vec(any::<u8>(), min..=30);
    let known: Vec<Vec<u8>> = [state.source.clone(), state.model.complete.clone()]
        .into_iter()
        .flatten()
        .filter(|c| c.len() >= min)
        .collect();
    if known.is_empty() {
        fresh.boxed()
    } else {
        prop_oneof![1 => fresh, 2 => prop::sample::select(known)].boxed()
    }
}

/// 0: no hash; 1: the hash of something else; otherwise the hash of `content`.
fn declared(content: &[u8], mode: u8) -> Option<Sha256> {
    match mode {
        0 => None,
        1 => Some(Sha256::of(b"something else")),
        _ => Some(Sha256::of(content)),
    }
}

/// A range upload of `source`: resuming where the partial ends, restarting at 0, or anywhere;
/// to the end or not; sometimes with a short or an overlong body.
fn range_upload(state: &State) -> BoxedStrategy<Step> {
    let current = state.model.partial_len();
    (
        content(state, 1),
        (any::<Index>(), any::<Index>(), 0_u8..4, 0_u8..3),
        (0_u8..6, 0_u8..10, any::<bool>(), any::<bool>()),
        fault(),
    )
        .prop_map(
            move |(
                source,
                (i, j, start_mode, end_mode),
                (hash_mode, body_mode, upper_hex, send_length),
                fault,
            )| {
                let total = source.len();
                let start = match start_mode {
                    0 | 1 if current < total => current,
                    2 => 0,
                    _ => i.index(total),
                };
                let end = if end_mode == 0 {
                    start + j.index(total - start)
                } else {
                    total - 1
                };
                let mut body = source[start..=end].to_vec();
                match body_mode {
                    0 => body.truncate(j.index(body.len())),
                    1 => body.extend_from_slice(b"excess"),
                    _ => {}
                }
                Step {
                    op: Op::PutRange {
                        start: start as u64,
                        end: end as u64,
                        total: total as u64,
                        hash: declared(&source, hash_mode),
                        upper_hex,
                        body,
                        send_length,
                        fault,
                    },
                    source: Some(source),
                }
            },
        )
        .boxed()
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = State;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<State> {
        (prop::bool::weighted(0.05), prop::option::of(Just(24_u64)))
            .prop_map(|(directory, limit)| State {
                model: Model::new(directory, limit),
                expect: Expect::Nothing,
                source: None,
            })
            .boxed()
    }

    fn transitions(state: &State) -> BoxedStrategy<Step> {
        let full = (content(state, 0), 0_u8..5, any::<bool>(), fault()).prop_map(
            |(body, mode, send_length, fault)| Step {
                op: Op::PutFull {
                    hash: declared(&body, mode),
                    body,
                    send_length,
                    fault,
                },
                source: None,
            },
        );
        let spoil = prop_oneof![
            Just(Spoil::Garbage),
            Just(Spoil::UpperCaseWrong),
            Just(Spoil::Stale)
        ];
        let other = |op| Step { op, source: None };
        prop_oneof![
            3 => full,
            6 => range_upload(state),
            3 => Just(other(Op::Head)),
            1 => spoil.prop_map(move |s| other(Op::Spoil(s))),
        ]
        .boxed()
    }

    fn apply(mut state: State, step: &Step) -> State {
        if step.source.is_some() {
            state.source.clone_from(&step.source);
        }
        state.expect = state.model.apply(&step.op);
        state
    }
}

struct Uploads;

impl StateMachineTest for Uploads {
    type SystemUnderTest = Disk;
    type Reference = Reference;

    fn init_test(reference: &State) -> Disk {
        Disk::new(reference.model.directory, reference.model.limit)
    }

    fn apply(mut disk: Disk, reference: &State, step: Step) -> Disk {
        disk.apply(&step.op, &reference.expect);
        disk
    }

    fn check_invariants(disk: &Disk, reference: &State) {
        disk.check_invariants(&reference.model);
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// After any sequence of full and range uploads, crashes, full disks, spoiled sidecars and
    /// `HEAD`s, the disk matches the reference model (INV-1…INV-5, HR-C06).
    #[test]
    fn uploads_follow_the_reference_model(sequential 1..32 => Uploads);
}

/// Runs `ops` on a fresh model and disk, checking every step, and returns both.
fn run(ops: &[Op]) -> (Model, Disk) {
    let mut model = Model::new(false, None);
    let mut disk = Disk::new(false, None);
    for op in ops {
        let expect = model.apply(op);
        disk.apply(op, &expect);
        disk.check_invariants(&model);
    }
    (model, disk)
}

fn range(start: u64, source: &[u8], fault: Fault) -> Op {
    let total = source.len() as u64;
    Op::PutRange {
        start,
        end: total - 1,
        total,
        body: source[usize::try_from(start).unwrap()..].to_vec(),
        hash: Some(Sha256::of(source)),
        upper_hex: false,
        send_length: true,
        fault,
    }
}

/// A crash after the last byte, before publishing, leaves a partial as long as the file. A
/// client that restarts from 0 with the same hash must get the file uploaded, not a 416 it can
/// never get past (shrunk from a failure of the state-machine test).
#[test]
fn a_restart_over_a_partial_holding_every_byte_uploads_the_file() {
    let source = b"fifteen bytes!!".to_vec();
    let (model, mut disk) = run(&[
        range(0, &source, Fault::Crash(CrashPoint::BeforePublish)),
        range(0, &source, Fault::None),
    ]);
    assert_eq!(model.complete.as_deref(), Some(&source[..]));
    assert_eq!(model.partial, None);
    disk.client_upload(&source).unwrap();
}

/// The same for a partial longer than the file now being uploaded under that hash (found by
/// the `plan_upload` fuzz target: the model had kept the partial and expected a 416).
#[test]
fn a_restart_over_a_partial_longer_than_the_file_starts_over() {
    let long = b"a longer file than the next".to_vec();
    let (mut model, mut disk) = run(&[range(0, &long, Fault::Crash(CrashPoint::BeforePublish))]);
    assert_eq!(model.partial_len(), long.len());
    let short = &long[..5];
    let restart = Op::PutRange {
        start: 0,
        end: 4,
        total: 5,
        body: short.to_vec(),
        hash: Some(Sha256::of(&long)),
        upper_hex: false,
        send_length: true,
        fault: Fault::None,
    };
    // The declared hash is the old target, the bytes are not: the restart discards the partial
    // and the upload fails its hash check.
    let expect = model.apply(&restart);
    assert_eq!(expect, Expect::Status(400));
    disk.apply(&restart, &expect);
    disk.check_invariants(&model);
    disk.client_upload(short).unwrap();
}
