use super::*;

fn file() -> Arc<File> {
    Arc::new(tempfile::tempfile().expect("temp file"))
}

#[test]
fn an_unverified_link_makes_no_stand_ins() {
    let link = Link::new(Metrics::new());
    assert!(link.standin(&file(), 0, 10, || true).is_none());
    assert!(!link.verified());
}

#[test]
fn a_probe_seen_in_place_verifies_and_a_copy_does_not() {
    let chunk = Bytes::from(vec![7_u8; 100]);
    let link = Link::new(Metrics::new());
    link.probe(&chunk);
    // hyper writes a copy (other memory holding the same bytes): not verified.
    let copy = chunk.to_vec();
    assert!(matches!(link.next(&[IoSlice::new(&copy)]), Next::Plain(1)));
    assert!(!link.verified());
    // The chunk's own memory, after the head: verified.
    let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    assert!(matches!(
        link.next(&[IoSlice::new(&head), IoSlice::new(&chunk[10..])]),
        Next::Plain(2)
    ));
    assert!(link.verified());

    // A download that ends before its probe was seen releases it; the next one probes again.
    let later = Link::new(Metrics::new());
    later.probe(&chunk);
    later.download_ended();
    assert!(matches!(
        later.next(&[IoSlice::new(&chunk)]),
        Next::Plain(1)
    ));
    assert!(!later.verified());
    let next_chunk = Bytes::from(vec![8_u8; 10]);
    later.probe(&next_chunk);
    let _ = later.next(&[IoSlice::new(&next_chunk)]);
    assert!(later.verified());
}

fn verified() -> Link {
    let link = Link::new(Metrics::new());
    let chunk = Bytes::from_static(b"proof");
    link.probe(&chunk);
    let _ = link.next(&[IoSlice::new(&chunk)]);
    assert!(link.verified());
    link
}

#[test]
fn stand_ins_resolve_in_order_to_their_file_ranges_and_partial_sends_advance() {
    let link = verified();
    let f = file();
    assert!(link.standin(&f, 0, 10, || false).is_none(), "not cached");
    let a = link.standin(&f, 100, 3 * STANDIN_MAX, || true).expect("a");
    assert_eq!(a.len(), STANDIN_MAX, "capped");
    let b = link
        .standin(&f, 100 + STANDIN_MAX as u64, 50, || true)
        .expect("b");
    assert!(a.iter().chain(b.iter()).all(|&byte| byte == 0));

    // Plain bytes before a stand-in are written as they are, alone; so is an empty buffer
    // pointing into the region.
    assert!(matches!(
        link.next(&[IoSlice::new(&b[50..])]),
        Next::Plain(1)
    ));
    let head = b"head".to_vec();
    assert!(matches!(
        link.next(&[IoSlice::new(&head), IoSlice::new(&a)]),
        Next::Plain(1)
    ));
    // The stand-in becomes its file range; a partial send advances it.
    match link.next(&[IoSlice::new(&a), IoSlice::new(&b)]) {
        Next::Send { offset, len, .. } => assert_eq!((offset, len), (100, STANDIN_MAX)),
        _ => panic!("expected a send"),
    }
    link.sent(1000);
    match link.next(&[IoSlice::new(&a[1000..])]) {
        Next::Send { offset, len, .. } => assert_eq!((offset, len), (1100, STANDIN_MAX - 1000)),
        _ => panic!("expected the rest"),
    }
    link.sent(STANDIN_MAX - 1000);
    match link.next(&[IoSlice::new(&b)]) {
        Next::Send { offset, len, .. } => assert_eq!((offset, len), (100 + STANDIN_MAX as u64, 50)),
        _ => panic!("expected b"),
    }
    link.sent(50);
}

#[test]
fn stand_in_memory_out_of_order_is_refused() {
    let link = verified();
    let f = file();
    let a = link.standin(&f, 0, 100, || true).expect("a");
    let b = link.standin(&f, 100, 100, || true).expect("b");
    // b before a, a from the middle, and another link's stand-in are all refused.
    assert!(matches!(link.next(&[IoSlice::new(&b)]), Next::Refuse));
    assert!(matches!(link.next(&[IoSlice::new(&a[1..])]), Next::Refuse));
    let other = verified();
    assert!(matches!(other.next(&[IoSlice::new(&a)]), Next::Refuse));
    // A slice longer than what is left of the stand-in (hyper never does this) is refused.
    let region = region();
    let at = a.as_ptr() as usize - region.as_ptr() as usize;
    let longer = &region[at..at + 101];
    assert!(matches!(link.next(&[IoSlice::new(longer)]), Next::Refuse));
}

#[test]
fn at_most_three_stand_ins_are_queued() {
    let link = verified();
    let f = file();
    let queued: Vec<Bytes> = (0..3)
        .map(|i| link.standin(&f, i * 10, 10, || true).expect("slot"))
        .collect();
    assert!(
        link.standin(&f, 30, 10, || true).is_none(),
        "all slots busy"
    );
    let _ = link.next(&[IoSlice::new(&queued[0])]);
    link.sent(10);
    assert!(
        link.standin(&f, 30, 10, || true).is_some(),
        "a slot was freed"
    );
}
