//! `FormBody` without a network: its bytes, its frames, `size_hint` and
//! `is_end_stream` together, clones, and parts that lie about their length.

use std::io::Write;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;

use super::{Form, FormBody, Part};
use crate::{ErrorKind, MmapBody};

fn assert_traits<T: Send + Sync + Unpin + Clone + 'static>() {}

#[test]
fn form_body_is_send_sync_unpin_clone() {
    assert_traits::<FormBody>();
}

/// Polls `body` to its end, checking after each frame that `size_hint` is
/// exact and counts down by the frame, and that `is_end_stream` turns true
/// exactly at the end; the frames, or the error that ended the body.
fn frames(body: &mut FormBody) -> Result<Vec<Bytes>, crate::Error> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        let before = body.size_hint().exact().expect("exact");
        assert_eq!(body.is_end_stream(), before == 0);
        match std::pin::Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let data = frame.into_data().expect("data only");
                assert!(!data.is_empty());
                assert_eq!(body.size_hint().exact(), Some(before - data.len() as u64));
                out.push(data);
            }
            Poll::Ready(Some(Err(err))) => return Err(err),
            Poll::Ready(None) => {
                assert_eq!(before, 0, "ended with bytes to go");
                assert!(body.is_end_stream());
                return Ok(out);
            }
            Poll::Pending => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

fn concat(frames: &[Bytes]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn a_form_of_text_is_its_rfc_7578_bytes() {
    let form = Form::new().text("title", "holiday").part(
        "notes",
        Part::bytes("a\r\nb")
            .file_name("n.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let b = form.boundary().to_owned();
    let mut body = form.into_body();
    let expected = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nholiday\
         \r\n--{b}\r\nContent-Disposition: form-data; name=\"notes\"; filename=\"n.txt\"\r\n\
         Content-Type: text/plain\r\n\r\na\r\nb\r\n--{b}--\r\n"
    );
    assert_eq!(body.len(), expected.len() as u64);
    let sent = frames(&mut body).unwrap();
    // Headers and small values: one frame.
    assert_eq!(sent.len(), 1);
    assert_eq!(concat(&sent), expected.as_bytes());
}

#[test]
fn an_empty_form_is_its_closing_delimiter() {
    let form = Form::new();
    let b = form.boundary().to_owned();
    let mut body = form.into_body();
    assert_eq!(
        concat(&frames(&mut body).unwrap()),
        format!("--{b}--\r\n").as_bytes()
    );
}

#[test]
fn every_form_has_its_own_boundary() {
    assert_ne!(Form::new().boundary(), Form::new().boundary());
}

/// A file of `len` bytes of a pattern, mapped.
fn mapped(len: usize) -> (MmapBody, Vec<u8>, tempfile::NamedTempFile) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&bytes).unwrap();
    // SAFETY: the temp file is private to this test; the truncation test
    // truncates it on purpose, which the body's checks report.
    let body = unsafe { MmapBody::open(file.path()) }.unwrap();
    (body, bytes, file)
}

#[test]
fn file_parts_are_slices_of_the_mapping_between_header_frames() {
    let (file, bytes, _keep) = mapped(3 << 20);
    let whole = Bytes::from(file.clone());
    let range = whole.as_ptr() as usize..whole.as_ptr() as usize + whole.len();
    let big = Bytes::from(vec![b'z'; 64 * 1024]);
    let form = Form::new()
        .text("a", "1")
        .part("file", Part::mmap(file).file_name("f.bin"))
        .part("big", Part::bytes(big.clone()));
    let mut body = form.into_body();
    let sent = frames(&mut body).unwrap();
    // Header, the file's frames (1 MiB each), header, the big value, closing.
    let header = &sent[0];
    assert!(header.len() < 256);
    let file_frames: Vec<&Bytes> = sent[1..]
        .iter()
        .take_while(|f| range.contains(&(f.as_ptr() as usize)))
        .collect();
    // Every byte of the file part but the last is a slice of the mapping;
    // the last is `MmapBody`'s tail, copied after its final check.
    assert_eq!(
        file_frames.iter().map(|f| f.len()).sum::<usize>(),
        bytes.len() - 1,
    );
    assert_eq!(sent[1 + file_frames.len()].len(), 1);
    assert!(file_frames.len() >= 3);
    // The big value is the caller's own `Bytes`, not a copy.
    assert!(sent
        .iter()
        .any(|f| f.as_ptr() == big.as_ptr() && f.len() == big.len()));
    let all = concat(&sent);
    let at = header.len();
    assert_eq!(&all[at..at + bytes.len()], &bytes[..]);
    assert!(String::from_utf8_lossy(header).contains("Content-Type: application/octet-stream"));
}

#[test]
fn a_clone_sends_the_form_again_from_the_start() {
    let (file, _, _keep) = mapped(2 << 20);
    let mut body = Form::new()
        .text("a", "1")
        .part("f", Part::mmap(file))
        .into_body();
    let fresh = body.clone();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // Half-way through: a clone made now still starts at the first byte.
    for _ in 0..2 {
        let _ = std::pin::Pin::new(&mut body).poll_frame(&mut cx);
    }
    assert!(body.size_hint().exact().unwrap() < body.len());
    let mut later = body.clone();
    assert_eq!(later.size_hint().exact(), Some(body.len()));
    let mut fresh = fresh;
    let a = concat(&frames(&mut fresh).unwrap());
    let b = concat(&frames(&mut later).unwrap());
    assert_eq!(a.len() as u64, body.len());
    assert_eq!(a, b);
}

#[test]
fn a_part_that_ends_short_is_an_error_not_a_short_form() {
    let mut body = Form::new()
        .part("f", Part::lying(&["abc"], 5))
        .text("after", "x")
        .into_body();
    let err = frames(&mut body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch);
    assert!(err.to_string().contains("2 bytes short"), "{err}");
    // Nothing more after the error.
    assert!(body.is_end_stream());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(matches!(
        std::pin::Pin::new(&mut body).poll_frame(&mut cx),
        Poll::Ready(None)
    ));
}

#[test]
fn a_part_that_goes_past_its_length_is_an_error() {
    let mut body = Form::new()
        .part("f", Part::lying(&["abc", "def"], 4))
        .into_body();
    let err = frames(&mut body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch);
}

#[test]
fn a_truncated_file_ends_the_form_with_the_files_error() {
    let (file, _, keep) = mapped(3 << 20);
    let mut body = Form::new().part("f", Part::mmap(file)).into_body();
    assert!(body.verify().is_ok());
    keep.as_file().set_len(1 << 20).unwrap();
    assert_eq!(body.verify().unwrap_err().kind(), ErrorKind::Truncated);
    let err = frames(&mut body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
}

#[test]
fn a_file_body_part_sends_the_file_and_reports_its_truncation() {
    let (_, bytes, keep) = mapped(3 << 20);
    let file = crate::FileBody::open(keep.path()).unwrap();
    let form = Form::new().part("f", Part::file(file).file_name("f.bin"));
    let mut body = form.into_body();
    let again = body.clone();
    let sent = concat(&frames(&mut body).unwrap());
    let at = sent.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&sent[at..at + bytes.len()], &bytes[..]);
    keep.as_file().set_len(1 << 20).unwrap();
    assert!(again.verify().is_err());
    let err = frames(&mut { again }).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Modified),
        "{err}"
    );
}
