//! A streaming decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1). It hands out the
//! data slices of whatever bytes it is given, so a body can be relayed chunk by chunk
//! without being gathered first. Strict: sizes are hex without sign or overflow, every line
//! ends in CRLF, and the decoded total is capped.

use super::HttpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size {
        digits: u8,
        size: u64,
    },
    /// After the size: optional whitespace before `;` or CR.
    SizeBws,
    /// Inside `;` extensions, up to CR.
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Decoder state; feed it bytes with `decode` until `is_done`.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    total: u64,
    limit: u64,
    trailer_bytes: usize,
    /// Size of the chunk whose size line is being finished.
    pending: u64,
}

/// Bytes of trailer fields accepted after the last chunk; they are read and dropped.
const MAX_TRAILER: usize = 8 * 1024;

impl ChunkedDecoder {
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0, size: 0 },
            total: 0,
            limit,
            trailer_bytes: 0,
            pending: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Consumes bytes from `input`, calling `emit` with each run of body data, and returns
    /// how many bytes were consumed. Stops at the end of the message: bytes after it (the
    /// next pipelined message) are left unconsumed.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut emit: impl FnMut(&'a [u8]),
    ) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { digits, size } => {
                    if let Some(d) = hex(b) {
                        if digits >= 15 {
                            return Err(HttpError::BadChunk("chunk size too large"));
                        }
                        self.state = State::Size {
                            digits: digits + 1,
                            size: size << 4 | d,
                        };
                        i += 1;
                        continue;
                    }
                    if digits == 0 {
                        return Err(HttpError::BadChunk("chunk size is not hexadecimal"));
                    }
                    self.total = self.total.saturating_add(size);
                    if self.total > self.limit {
                        return Err(HttpError::BodyTooLarge { limit: self.limit });
                    }
                    self.pending = size;
                    match b {
                        b'\r' => {
                            self.state = State::SizeLf;
                            i += 1;
                        }
                        b' ' | b'\t' => self.state = State::SizeBws,
                        b';' => {
                            self.state = State::Ext;
                            i += 1;
                        }
                        _ => return Err(HttpError::BadChunk("junk after chunk size")),
                    }
                }
                State::SizeBws => {
                    match b {
                        b' ' | b'\t' => {}
                        b';' => self.state = State::Ext,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(HttpError::BadChunk("junk after chunk size")),
                    }
                    i += 1;
                }
                State::Ext => {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err(HttpError::BadChunk("bare LF in chunk size line")),
                        0..=8 | 10..=31 | 127 => {
                            return Err(HttpError::BadChunk(
                                "control character in chunk extension",
                            ));
                        }
                        _ => {}
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk("CR not followed by LF"));
                    }
                    i += 1;
                    self.state = if self.pending == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(self.pending)
                    };
                }
                State::Data(left) => {
                    let take = (left.min((input.len() - i) as u64)) as usize;
                    emit(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(HttpError::BadChunk("chunk data longer than its size"));
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk("CR not followed by LF"));
                    }
                    i += 1;
                    self.state = State::Size { digits: 0, size: 0 };
                }
                State::TrailerStart => {
                    i += 1;
                    self.trailer_bytes += 1;
                    self.state = if b == b'\r' {
                        State::TrailerLf { last: true }
                    } else if b == b'\n' {
                        return Err(HttpError::BadChunk("bare LF in trailer"));
                    } else {
                        State::TrailerLine
                    };
                }
                State::TrailerLine => {
                    i += 1;
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILER {
                        return Err(HttpError::BadChunk("trailer section too large"));
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf { last: false },
                        b'\n' => return Err(HttpError::BadChunk("bare LF in trailer")),
                        _ => {}
                    }
                }
                State::TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(HttpError::BadChunk("CR not followed by LF"));
                    }
                    i += 1;
                    if last {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Appends one chunk (size line, data, CRLF) to `out`. An empty `data` is skipped: a
/// zero-size chunk would end the message.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    while n > 0 {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last-chunk and empty trailer that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            pos += d.decode(&input[pos..end], |s| out.extend_from_slice(s))?;
            if pos < end && !d.is_done() {
                unreachable!("decoder stopped early without finishing");
            }
        }
        Ok((out, pos, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let msg = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in 1..msg.len() {
            let (out, used, done) = decode_all(msg, step).unwrap();
            assert_eq!(out, b"hello world", "step {step}");
            assert!(done);
            assert_eq!(&msg[used..], b"NEXT", "the next message is left alone");
        }
    }

    #[test]
    fn refuses_malformed_chunks() {
        let bad: [&[u8]; 9] = [
            b"x\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n\x01",
            b"0\r\n\n",
            b"5x\r\n",
        ];
        for b in bad {
            assert!(
                decode_all(b, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn caps_the_decoded_size() {
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(
            d.decode(b"5\r\nhello\r\n", |_| {}),
            Err(HttpError::BodyTooLarge { limit: 4 })
        );
    }

    #[test]
    fn encode_then_decode() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &[7u8; 300]);
        encode_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let (body, _, done) = decode_all(&out, 7).unwrap();
        assert_eq!(body, vec![7u8; 300]);
        assert!(done);
    }
}
