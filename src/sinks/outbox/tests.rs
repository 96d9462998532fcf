use super::*;

fn records(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"id\":\"f{i}\"}}").into_bytes())
        .collect()
}

fn ids(pending: &Pending) -> Vec<String> {
    pending
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

fn all(reader: &mut Reader) -> Vec<String> {
    ids(&reader.peek(usize::MAX, usize::MAX).unwrap())
}

#[test]
fn appended_records_read_back_in_order_and_the_cursor_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(w.append(7, &records(0, 5)).unwrap().written, 5);
    let first = r.peek(2, usize::MAX).unwrap();
    assert_eq!(ids(&first), ["{\"id\":\"f0\"}", "{\"id\":\"f1\"}"]);
    assert_eq!(first.records[0].time_ms, 7);
    // Not committed: read again from the same place.
    assert_eq!(ids(&r.peek(2, usize::MAX).unwrap()), ids(&first));
    r.commit(&first).unwrap();
    assert_eq!(r.depth().records, 3);
    drop((w, r));

    let (_w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(r.depth().records, 3);
    assert_eq!(all(&mut r), ids_of(2, 3));
}

fn ids_of(from: usize, n: usize) -> Vec<String> {
    records(from, n)
        .into_iter()
        .map(|r| String::from_utf8(r).unwrap())
        .collect()
}

#[test]
fn a_batch_is_bounded_by_items_and_by_bytes_but_never_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r) = open(dir.path(), u64::MAX).unwrap();
    w.append(1, &records(0, 10)).unwrap();
    assert_eq!(r.peek(3, usize::MAX).unwrap().records.len(), 3);
    // Each record is 11 bytes: 25 bytes hold two.
    assert_eq!(r.peek(100, 25).unwrap().records.len(), 2);
    assert_eq!(r.peek(100, 1).unwrap().records.len(), 1);
}

#[test]
fn delivered_segments_are_deleted_and_reading_crosses_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r) = open(dir.path(), u64::MAX).unwrap();
    let big = vec![vec![b'x'; 1024 * 1024]; 10];
    w.append(1, &big).unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() >= 2, "{segments:?}");
    let mut seen = 0;
    loop {
        let p = r.peek(3, usize::MAX).unwrap();
        if p.records.is_empty() {
            break;
        }
        seen += p.records.len();
        r.commit(&p).unwrap();
    }
    assert_eq!(seen, 10);
    assert_eq!(r.depth(), Depth::default());
    assert_eq!(
        list_segments(dir.path()).unwrap(),
        [*segments.last().unwrap()]
    );
    // And the writer goes on after them.
    w.append(2, &records(0, 1)).unwrap();
    assert_eq!(all(&mut r), ids_of(0, 1));
}

#[test]
fn a_torn_tail_after_a_crash_is_ignored_and_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _r) = open(dir.path(), u64::MAX).unwrap();
    w.append(1, &records(0, 3)).unwrap();
    drop(w);
    // A crash in the middle of a write: a header and part of a payload.
    let seg = segment_path(dir.path(), 1);
    let mut frame = Vec::new();
    encode(1, b"{\"id\":\"torn\"}", &mut frame);
    let mut file = OpenOptions::new().append(true).open(&seg).unwrap();
    file.write_all(&frame[..frame.len() - 4]).unwrap();
    drop(file);

    let (mut w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(r.depth().records, 3);
    w.append(2, &records(3, 1)).unwrap();
    assert_eq!(all(&mut r), ids_of(0, 4));
    drop((w, r));
    let (_w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(all(&mut r), ids_of(0, 4));
}

#[test]
fn a_damaged_frame_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _r) = open(dir.path(), u64::MAX).unwrap();
    w.append(1, &records(0, 2)).unwrap();
    drop(w);
    // Flip a payload byte of the last record: its checksum no longer holds.
    let seg = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff;
    fs::write(&seg, bytes).unwrap();
    let (_w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(all(&mut r), ids_of(0, 1));
}

#[test]
fn past_the_limit_records_are_dropped_and_counted_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    // Each frame is 16 + 11 bytes: the limit holds three.
    let (mut w, mut r) = open(dir.path(), 3 * 27 + 5).unwrap();
    let done = w.append(1, &records(0, 5)).unwrap();
    assert_eq!(
        done,
        Appended {
            written: 3,
            dropped: 2
        }
    );
    assert_eq!(w.append(1, &records(5, 1)).unwrap().dropped, 1);
    let p = r.peek(2, usize::MAX).unwrap();
    r.commit(&p).unwrap();
    assert_eq!(w.append(1, &records(6, 2)).unwrap().written, 2);
    assert_eq!(
        all(&mut r),
        ["{\"id\":\"f2\"}", "{\"id\":\"f6\"}", "{\"id\":\"f7\"}"]
    );
}

#[test]
fn a_lost_cursor_resends_rather_than_loses() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut r) = open(dir.path(), u64::MAX).unwrap();
    w.append(1, &records(0, 3)).unwrap();
    let p = r.peek(1, usize::MAX).unwrap();
    r.commit(&p).unwrap();
    drop((w, r));
    fs::write(dir.path().join(CURSOR), "garbage").unwrap();
    let (_w, mut r) = open(dir.path(), u64::MAX).unwrap();
    assert_eq!(all(&mut r), ids_of(0, 3));
}

#[test]
fn the_reader_wakes_on_an_append_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, r) = open(dir.path(), u64::MAX).unwrap();
    let waiter = std::thread::spawn(move || r.wait(Duration::from_secs(60)));
    w.append(1, &records(0, 1)).unwrap();
    assert!(waiter.join().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let (w, r) = open(dir.path(), u64::MAX).unwrap();
    let waiter = std::thread::spawn(move || r.wait(Duration::from_secs(60)));
    w.close();
    assert!(!waiter.join().unwrap());
}
