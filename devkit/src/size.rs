//! Sizes as people write them (`64MiB`, `1GiB`, `4096`) and as reports
//! print them (`64.0 MiB`, powers of 1024), with bytesize.

use bytesize::ByteSize;

use crate::BoxError;

/// Parses `64MiB`, `1GiB`, `512KiB`, `4096` (bytes), ... as bytesize does
/// (`K`/`KB`, `M`/`MB`, `G`/`GB` are powers of 1000; `KiB`, `MiB`, `GiB`
/// of 1024).
pub fn parse_size(text: &str) -> Result<u64, BoxError> {
    let size: ByteSize = text
        .trim()
        .parse()
        .map_err(|err| format!("bad size `{text}` ({err}); write e.g. 64MiB or 1GiB"))?;
    Ok(size.as_u64())
}

/// A `--size 256MiB` option; `default` without it.
pub fn size_arg(default: u64) -> Result<u64, BoxError> {
    let mut size = default;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--size", Some(value)) => size = parse_size(&value)?,
            _ => return Err(format!("unknown option `{arg}`; use --size 256MiB").into()),
        }
    }
    Ok(size)
}

/// `1.0 GiB`, `41.0 KiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_both_ways() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size(" 1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1KB").unwrap(), 1000);
        assert_eq!(parse_size("1K").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert_eq!(human(1 << 30), "1.0 GiB");
        assert_eq!(human(41 << 10), "41.0 KiB");
        assert_eq!(human(512), "512 B");
    }
}
