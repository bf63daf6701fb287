//! One agent connection: HTTP/1.1 keep-alive with pipelined requests answered in order,
//! heads and bodies read under size limits and deadlines, and every failure answered with
//! the right status (400, 408, 413, 431, 501, 505) before the connection closes.

use super::{Request, Service, Worker};
use crate::http::head::{Framing, RequestHead, parse_request};
use crate::http::{ChunkedDecoder, HttpError};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The writable half of a connection and the buffers a service reuses across requests.
pub struct ConnIo {
    pub stream: TcpStream,
    /// Response bytes; flushed by the connection loop after the service returns.
    pub wbuf: Vec<u8>,
    /// Scratch space for the service (scrubbing, re-chunking).
    pub scratch: Vec<u8>,
    /// The upstream request being built.
    pub upreq: Vec<u8>,
    /// A gathered upstream body.
    pub gather: Vec<u8>,
    /// A second scratch buffer (held-back bytes of a scrubbed stream).
    pub carry: Vec<u8>,
    /// A buffer the service keeps across the awaits of one request (an audit record).
    pub note: Vec<u8>,
    pub write_timeout: Duration,
    /// The timer all of this connection's reads and writes share.
    pub deadline: super::deadline::Deadline,
}

impl ConnIo {
    /// Writes out `wbuf`. A failure or timeout means the agent is gone.
    pub async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        match self
            .deadline
            .within(self.write_timeout, self.stream.write_all(buf))
            .await
        {
            Ok((Ok(_), mut b)) => {
                b.clear();
                self.wbuf = b;
                Ok(())
            }
            Ok((Err(_), _)) | Err(_) => Err(()),
        }
    }
}

/// What the connection does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    KeepAlive,
    Close,
}

enum ReadErr {
    Eof,
    Timeout,
    Io,
}

async fn read_more(
    stream: &mut TcpStream,
    deadline: &mut super::deadline::Deadline,
    buf: &mut Vec<u8>,
    timeout: Duration,
    want: usize,
) -> Result<usize, ReadErr> {
    if buf.capacity() - buf.len() < want.max(1024) {
        buf.reserve(want.max(4096));
    }
    let b = std::mem::take(buf);
    let (len, cap) = (b.len(), b.capacity());
    match deadline
        .within(timeout, stream.read(b.slice_mut(len..cap)))
        .await
    {
        Ok((Ok(0), s)) => {
            *buf = s.into_inner();
            Err(ReadErr::Eof)
        }
        Ok((Ok(n), s)) => {
            *buf = s.into_inner();
            Ok(n)
        }
        Ok((Err(_), s)) => {
            *buf = s.into_inner();
            Err(ReadErr::Io)
        }
        Err(_) => Err(ReadErr::Timeout),
    }
}

/// A JSON error body for failures found before any decision was made.
pub fn write_error(io: &mut ConnIo, status: u16, reason: &str, message: &str) {
    let mut body = Vec::with_capacity(96 + message.len());
    body.extend_from_slice(b"{\"error\":");
    crate::http::write::json_str(&mut body, message);
    body.extend_from_slice(b",\"reason\":");
    crate::http::write::json_str(&mut body, reason);
    body.extend_from_slice(b"}");
    crate::http::write::full_response(&mut io.wbuf, status, "application/json", &[], &body, true);
}

fn http_reason(e: &HttpError) -> &'static str {
    match e {
        HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => "head_too_large",
        HttpError::BodyTooLarge { .. } => "body_too_large",
        HttpError::UnsupportedTransferCoding => "unsupported_transfer_coding",
        HttpError::Version => "http_version",
        HttpError::Ambiguous(_) => "ambiguous_framing",
        HttpError::BadChunk(_) => "bad_chunk",
        HttpError::Malformed(_) => "malformed_request",
    }
}

async fn fail(io: &mut ConnIo, e: &HttpError) {
    write_error(io, e.status(), http_reason(e), &e.to_string());
    let _ = io.flush().await;
    let _ = io.stream.shutdown().await;
}

/// Serves one connection until the client closes it, a limit is hit, or a response says
/// close.
pub async fn serve<S: Service>(
    svc: Rc<S>,
    stream: TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
) {
    let limits = &worker.limits;
    let _ = stream.set_nodelay(true);
    let mut io = ConnIo {
        stream,
        wbuf: Vec::with_capacity(8 * 1024),
        scratch: Vec::new(),
        upreq: Vec::with_capacity(2 * 1024),
        gather: Vec::new(),
        carry: Vec::new(),
        note: Vec::with_capacity(1024),
        write_timeout: limits.idle_timeout,
        deadline: super::deadline::Deadline::new(),
    };
    let mut rbuf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut body: Vec<u8> = Vec::new();
    loop {
        // A complete head: wait up to the idle timeout for its first byte, then up to the
        // header timeout for the rest.
        let mut started: Option<Instant> = None;
        let head: RequestHead = loop {
            if !rbuf.is_empty() {
                match parse_request(&rbuf, limits.max_head_bytes) {
                    Ok(Some(h)) => break h,
                    // The header timeout runs from the first bytes of a head that did not
                    // come whole; a head read in one go never needs the clock.
                    Ok(None) => {
                        started.get_or_insert_with(Instant::now);
                    }
                    Err(e) => return fail(&mut io, &e).await,
                }
            }
            let timeout = match started {
                None => limits.idle_timeout,
                Some(t) => match limits.header_timeout.checked_sub(t.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => Duration::from_millis(1),
                },
            };
            match read_more(&mut io.stream, &mut io.deadline, &mut rbuf, timeout, 0).await {
                Ok(_) => {}
                Err(ReadErr::Timeout) if started.is_some() => {
                    write_error(
                        &mut io,
                        408,
                        "header_timeout",
                        "request head not received in time",
                    );
                    let _ = io.flush().await;
                    return;
                }
                Err(_) => return,
            }
        };

        if head.framing() != Framing::None {
            let early = Request {
                head: &head,
                buf: &rbuf,
                body: &[],
                peer,
            };
            if svc.refuse_early(&early, &mut io) {
                let _ = io.flush().await;
                let _ = io.stream.shutdown().await;
                return;
            }
        }
        let mut consumed = head.len;
        // Set by the first read the body needs: a body that came with its head needs none.
        let mut body_deadline: Option<Instant> = None;
        let mut body_left = || {
            let d = *body_deadline.get_or_insert_with(|| Instant::now() + limits.body_timeout);
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        let body_range: Option<std::ops::Range<usize>> = match head.framing() {
            Framing::None | Framing::UntilClose => Some(head.len..head.len),
            Framing::Length(n) => {
                if n > limits.max_body_bytes as u64 {
                    return fail(
                        &mut io,
                        &HttpError::BodyTooLarge {
                            limit: limits.max_body_bytes as u64,
                        },
                    )
                    .await;
                }
                let end = head.len + n as usize;
                if head.expect_continue && rbuf.len() < end {
                    io.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if io.flush().await.is_err() {
                        return;
                    }
                }
                while rbuf.len() < end {
                    let left = body_left();
                    let want = end - rbuf.len();
                    match read_more(&mut io.stream, &mut io.deadline, &mut rbuf, left, want).await {
                        Ok(_) => {}
                        Err(ReadErr::Timeout) => {
                            write_error(
                                &mut io,
                                408,
                                "body_timeout",
                                "request body not received in time",
                            );
                            let _ = io.flush().await;
                            return;
                        }
                        Err(_) => return,
                    }
                }
                consumed = end;
                Some(head.len..end)
            }
            Framing::Chunked => {
                if head.expect_continue {
                    io.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    if io.flush().await.is_err() {
                        return;
                    }
                }
                body.clear();
                let mut dec = ChunkedDecoder::new(limits.max_body_bytes as u64);
                loop {
                    match dec.decode(&rbuf[consumed..], |d| body.extend_from_slice(d)) {
                        Ok(used) => consumed += used,
                        Err(e) => return fail(&mut io, &e).await,
                    }
                    if dec.is_done() {
                        break;
                    }
                    let left = body_left();
                    match read_more(&mut io.stream, &mut io.deadline, &mut rbuf, left, 0).await {
                        Ok(_) => {}
                        Err(ReadErr::Timeout) => {
                            write_error(
                                &mut io,
                                408,
                                "body_timeout",
                                "request body not received in time",
                            );
                            let _ = io.flush().await;
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None
            }
        };
        let req = Request {
            head: &head,
            buf: &rbuf,
            body: match &body_range {
                Some(r) => &rbuf[r.clone()],
                None => &body,
            },
            peer,
        };
        worker.in_flight.set(worker.in_flight.get() + 1);
        let disposition = svc.call(req, &mut io).await;
        worker.in_flight.set(worker.in_flight.get() - 1);
        let close = disposition == Disposition::Close || head.close || worker.stopping();
        // A relayed response has gone out already and said so itself (`proxy::exchange`).
        if head.minor == 0 && !close {
            crate::http::write::announce_keep_alive(&mut io.wbuf);
        }
        if io.flush().await.is_err() {
            return;
        }
        if close {
            let _ = io.stream.shutdown().await;
            return;
        }
        rbuf.drain(..consumed);
    }
}
