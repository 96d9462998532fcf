//! gzip and base64, the way Kinesis, Firehose and CloudWatch Logs
//! subscriptions deliver payloads, decoded within the arena's limit: a small
//! compressed body must not become gigabytes of memory.

use std::io::{self, Read};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use flate2::read::MultiGzDecoder;

use super::arena::{Arena, DEFAULT_INFLATE_LIMIT};

pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Standard alphabet; padding optional (some producers strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EncodingError {
    /// Decoding would produce more than the arena's remaining room.
    TooLarge {
        limit: usize,
    },
    /// A gzip stream that inflates past the arena's ratio.
    Ratio {
        ratio: usize,
    },
    Corrupt(String),
}

/// Decompresses gzip data (one member or several back to back, as Firehose
/// concatenates records) into the arena, or fails once the output would pass
/// the arena's limit or its ratio. Memory stays within about twice the limit.
pub(crate) fn gunzip<'a>(data: &[u8], arena: &'a Arena) -> Result<&'a [u8], EncodingError> {
    let room = arena.remaining();
    let by_ratio = data.len().saturating_mul(arena.ratio());
    let cap = room.min(by_ratio);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(cap));
    let mut decoder = MultiGzDecoder::new(data).take(cap as u64 + 1);
    if let Err(e) = decoder.read_to_end(&mut out) {
        return Err(EncodingError::Corrupt(match e.kind() {
            io::ErrorKind::UnexpectedEof => "truncated gzip data".to_owned(),
            _ => format!("corrupt gzip data: {e}"),
        }));
    }
    if out.len() > cap {
        return Err(if by_ratio < room {
            EncodingError::Ratio {
                ratio: arena.ratio(),
            }
        } else {
            EncodingError::TooLarge {
                limit: arena.limit(),
            }
        });
    }
    Ok(arena.keep_bytes(out))
}

/// Whether a line may be base64 text: only the standard alphabet and `=`.
pub(crate) fn is_base64_line(line: &str) -> bool {
    !line.is_empty()
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Decodes base64 text (line breaks allowed), if the result fits in the
/// arena's remaining room; the caller keeps it there if it wants it.
pub(crate) fn unbase64(text: &str, arena: &Arena) -> Result<Vec<u8>, EncodingError> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.len() / 4 * 3 > arena.remaining() {
        return Err(EncodingError::TooLarge {
            limit: arena.limit(),
        });
    }
    BASE64
        .decode(&compact)
        .map_err(|e| EncodingError::Corrupt(format!("invalid base64: {e}")))
}

/// Whether decoded bytes are something a body may hold: gzip, or JSON text.
pub(crate) fn looks_like_payload(bytes: &[u8]) -> bool {
    if bytes.starts_with(&GZIP_MAGIC) {
        return true;
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// For reading files: a gzip-compressed input (`audit.log.gz`, a Firehose
/// object in S3) is decompressed as a stream, so a large archive needs no
/// more memory than a plain file. Any other input is passed through as it
/// is. A decompressed line longer than [`DEFAULT_INFLATE_LIMIT`] fails the
/// read: a few bytes of zip bomb must not fill memory while the reader
/// waits for the end of a line.
pub fn decompress_reader(mut reader: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let reader = io::Cursor::new(head[..got].to_vec()).chain(reader);
    if head[..got] == GZIP_MAGIC {
        Ok(Box::new(LineLimit {
            inner: MultiGzDecoder::new(reader),
            since_newline: 0,
            max: DEFAULT_INFLATE_LIMIT,
        }))
    } else {
        Ok(Box::new(reader))
    }
}

/// Fails a read once more than `max` bytes pass without a line break.
struct LineLimit<R> {
    inner: R,
    since_newline: usize,
    max: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(i) => self.since_newline = n - i - 1,
            None => self.since_newline += n,
        }
        if self.since_newline > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "gzip input decompresses to a line longer than {} MiB: not an audit log",
                    self.max >> 20
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gunzip_within_and_past_the_limit() {
        let arena = Arena::with_limit(1000);
        assert_eq!(gunzip(&gzip(b"hello"), &arena).unwrap(), b"hello");
        let mut two = gzip(b"a");
        two.extend(gzip(b"b"));
        assert_eq!(gunzip(&two, &arena).unwrap(), b"ab");
        assert_eq!(
            gunzip(&gzip(&[b'x'; 2000]), &arena),
            Err(EncodingError::TooLarge { limit: 1000 })
        );
        let cut = gzip(b"hello world, hello world");
        assert!(matches!(
            gunzip(&cut[..cut.len() - 6], &arena),
            Err(EncodingError::Corrupt(_))
        ));
    }

    #[test]
    fn a_stream_may_not_inflate_past_the_ratio() {
        let arena = Arena::with_limits(1 << 20, 10);
        let bomb = gzip(&[b' '; 100_000]);
        assert!(bomb.len() * 10 < 100_000);
        assert_eq!(
            gunzip(&bomb, &arena),
            Err(EncodingError::Ratio { ratio: 10 })
        );
        // Nested: the outer stream is small, the inner one a bomb.
        let nested = gzip(&bomb);
        let inner = gunzip(&nested, &arena).unwrap();
        assert_eq!(
            gunzip(inner, &arena),
            Err(EncodingError::Ratio { ratio: 10 })
        );
        // Ordinary JSON at an ordinary ratio passes.
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        assert_eq!(gunzip(&gzip(&text), &arena).unwrap(), text.as_slice());
    }

    #[test]
    fn the_limit_is_shared_by_everything_one_arena_decodes() {
        let arena = Arena::with_limit(100);
        gunzip(&gzip(&[b'x'; 60]), &arena).unwrap();
        assert!(matches!(
            gunzip(&gzip(&[b'x'; 60]), &arena),
            Err(EncodingError::TooLarge { .. })
        ));
    }

    #[test]
    fn base64_with_and_without_padding_or_line_breaks() {
        let arena = Arena::new();
        assert_eq!(unbase64("aGVsbG8=", &arena).unwrap(), b"hello");
        assert_eq!(unbase64("aGVsbG8", &arena).unwrap(), b"hello");
        assert_eq!(unbase64("aGVs\nbG8=\n", &arena).unwrap(), b"hello");
        assert!(unbase64("a=b=", &arena).is_err());
        assert!(is_base64_line("H4sIAAAAAAAA/+1X"));
        assert!(!is_base64_line("not base64"));
        assert!(!is_base64_line(""));
    }

    #[test]
    fn payloads_are_gzip_or_json() {
        assert!(looks_like_payload(&gzip(b"{}")));
        assert!(looks_like_payload(b"  \n{\"a\":1}"));
        assert!(looks_like_payload(b"\xEF\xBB\xBF[1]"));
        assert!(!looks_like_payload(b"\x9e\x7b\xa7"));
    }

    #[test]
    fn streamed_gzip_is_decompressed_and_plain_input_passed_through() {
        let mut out = String::new();
        decompress_reader(Box::new(io::Cursor::new(gzip(b"line 1\nline 2\n"))))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "line 1\nline 2\n");
        let mut out = String::new();
        decompress_reader(Box::new(io::Cursor::new(b"{}\n".to_vec())))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "{}\n");
        let mut out = Vec::new();
        decompress_reader(Box::new(io::Cursor::new(b"{".to_vec())))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"{");
    }

    #[test]
    fn a_streamed_bomb_without_line_breaks_fails_the_read() {
        let mut guard = LineLimit {
            inner: io::repeat(b'0'),
            since_newline: 0,
            max: 1 << 16,
        };
        let mut buf = vec![0; 4096];
        let mut total = 0;
        let err = loop {
            match guard.read(&mut buf) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(total <= 1 << 16);
    }
}
