//! The files [`save`](fn@super::save) keeps beside its target: the bytes in
//! `<name>.part`, written off the async worker a batch at a time, and the
//! version they belong to in `<name>.part.meta`; and the last step that
//! makes the `.part` the file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::HeaderValue;
use http_body::Body;
use http_body_util::BodyExt;

use super::blocking::blocking;
use super::continuation::Validator;
use crate::error::{BoxError, Error, ErrorKind};

/// Bytes written to the file in one go, off the async worker.
const BATCH: usize = 4 << 20;

/// What `<name>.part.meta` holds: which representation the `.part` has
/// the start of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) uri: String,
    pub(super) validator: Validator,
    pub(super) complete: u64,
}

const MAGIC: &str = "mmap-body download 1";

impl Meta {
    fn to_text(&self) -> String {
        let (name, value) = match &self.validator {
            Validator::ETag(v) => ("etag", v),
            Validator::LastModified(v) => ("last-modified", v),
        };
        let value = String::from_utf8_lossy(value.as_bytes());
        format!(
            "{MAGIC}\nuri {}\n{name} {value}\nlength {}\n",
            self.uri, self.complete
        )
    }

    /// `None` for anything but what [`to_text`](Meta::to_text) wrote (a
    /// file cut short by a crash included): the `.part` is then started
    /// over.
    pub(super) fn parse(text: &str) -> Option<Meta> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        (lines.next()? == MAGIC).then_some(())?;
        let uri = lines.next()?.strip_prefix("uri ")?.to_owned();
        let (name, value) = lines.next()?.split_once(' ')?;
        let value = HeaderValue::from_str(value).ok()?;
        let validator = match name {
            "etag" => Validator::ETag(value),
            "last-modified" => Validator::LastModified(value),
            _ => return None,
        };
        let complete = lines.next()?.strip_prefix("length ")?.parse().ok()?;
        lines.next().is_none().then_some(Meta {
            uri,
            validator,
            complete,
        })
    }
}

/// `path` with `suffix` added to its file name.
pub(super) fn beside(path: &Path, suffix: &str) -> Result<PathBuf, BoxError> {
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::Io,
            format!("{} names no file to save to", path.display()),
        )
    })?;
    let mut name = name.to_owned();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BoxError {
    let what = what.into();
    move |err| Error::io(what, err).into()
}

pub(super) fn remove_if_there(path: &Path) -> Result<(), BoxError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

pub(super) fn write_meta(path: &Path, meta: &Meta) -> Result<(), BoxError> {
    let mut file = File::create(path).map_err(io(format!("create {}", path.display())))?;
    file.write_all(meta.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("write {}", path.display())))
}

/// Writes `body` to `file` from its position on, a batch at a time;
/// returns the file and the bytes written. On a body error every byte
/// received before it is written first.
pub(super) async fn write_body<B>(
    mut file: File,
    body: B,
    part: &Path,
) -> Result<(File, u64), BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut written = 0u64;
    loop {
        let mut batch: Vec<Bytes> = Vec::new();
        let mut size = 0;
        let mut failed = None;
        let mut ended = false;
        while size < BATCH {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        size += data.len();
                        batch.push(data);
                    }
                }
                Some(Err(err)) => {
                    failed = Some(err.into());
                    break;
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let what = format!("write {}", part.display());
        let (back, result) = blocking(move || {
            let result = batch.iter().try_for_each(|b| file.write_all(b));
            (file, result)
        })
        .await?;
        file = back;
        result.map_err(io(what))?;
        written += size as u64;
        if let Some(err) = failed {
            return Err(err);
        }
        if ended {
            return Ok((file, written));
        }
    }
}

/// `fsync` the whole `.part`, rename it to `path`, drop the `.meta`,
/// `fsync` the directory.
pub(super) async fn finish(
    file: File,
    part: &Path,
    path: &Path,
    meta: &Path,
) -> Result<(), BoxError> {
    let (part, path, meta) = (part.to_owned(), path.to_owned(), meta.to_owned());
    blocking(move || {
        file.sync_all()
            .map_err(io(format!("fsync {}", part.display())))?;
        drop(file);
        fs::rename(&part, &path).map_err(io(format!(
            "rename {} to {}",
            part.display(),
            path.display()
        )))?;
        remove_if_there(&meta)?;
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(format!("fsync {}", dir.display())))?;
        }
        Ok(())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_refuses_anything_else() {
        let meta = Meta {
            uri: "http://127.0.0.1:8080/big.iso".into(),
            validator: Validator::ETag(HeaderValue::from_static("\"65-1a2b\"")),
            complete: 1 << 40,
        };
        let text = meta.to_text();
        assert_eq!(Meta::parse(&text), Some(meta.clone()));
        let date = Meta {
            validator: Validator::LastModified(HeaderValue::from_static(
                "Sun, 06 Dec 2026 02:59:59 GMT",
            )),
            ..meta
        };
        assert_eq!(Meta::parse(&date.to_text()), Some(date));
        // A crash mid-write leaves a prefix: refused, never half-read.
        for cut in 0..text.len() {
            assert_eq!(Meta::parse(&text[..cut]), None, "{:?}", &text[..cut]);
        }
        assert_eq!(Meta::parse(&format!("{text}more\n")), None);
        assert_eq!(Meta::parse(&text.replace("etag", "crc")), None);
    }

    #[test]
    fn part_names_sit_beside_the_file() {
        assert_eq!(
            beside(Path::new("/d/big.iso"), ".part").unwrap(),
            Path::new("/d/big.iso.part")
        );
        assert_eq!(
            beside(Path::new("big"), ".part.meta").unwrap(),
            Path::new("big.part.meta")
        );
        assert!(beside(Path::new("/"), ".part").is_err());
    }
}
