//! One request/response exchange with an upstream, relaying the response as it arrives:
//! to the agent's connection as an HTTP response (`Sink::Client`), or gathered into a
//! bounded buffer when the gateway must wrap it (`Sink::Gather`). Every byte passes the
//! credential scrubber. A stale pooled connection that fails before any response byte is
//! retried once on a fresh connection when the method is idempotent.

use super::ProxyError;
use super::pool::{Pool, UpstreamConn};
use super::scrub::Scrubber;
use crate::http::chunked::{ChunkedDecoder, LAST_CHUNK, encode_chunk};
use crate::http::head::{Framing, Method, parse_response};
use crate::http::write::{push_u64, reason};
use crate::server::deadline::Deadline;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::time::Duration;

/// Rewrites a relayed body as it streams (the MCP bridge between protocol revisions).
/// Sees the bytes after credential scrubbing.
pub trait Rewrite {
    /// Called once with the response's content type, before any body byte.
    fn begin(&mut self, content_type: Option<&[u8]>);
    /// Takes the next piece of body; returns what is ready to relay now.
    fn feed(&mut self, piece: &[u8]) -> &[u8];
    /// End of the body: returns whatever was held back.
    fn finish(&mut self) -> &[u8];
}

/// Where the upstream's answer goes.
pub enum Sink<'a> {
    /// Relay as this connection's HTTP response. `extra` holds complete header lines the
    /// gateway adds (decision id). `http10` clients get a close-delimited body when the
    /// length is not known up front.
    Client {
        stream: &'a mut TcpStream,
        wbuf: &'a mut Vec<u8>,
        scratch: &'a mut Vec<u8>,
        extra: &'a [u8],
        close: bool,
        http10: bool,
        write_timeout: Duration,
        /// The client connection's timer, shared by its writes.
        deadline: &'a mut Deadline,
        /// Relay non-2xx answers too. When false, a non-2xx answer is gathered into
        /// `scratch` (bounded by `Limits`) and returned without touching the client, so
        /// the caller can translate it (an upstream MCP session expiring is not the
        /// agent's session expiring).
        relay_errors: bool,
        /// Response fields not to relay (lower case), on top of the hop-by-hop ones: an
        /// upstream MCP server's `mcp-session-id` belongs to the gateway's session with
        /// it, not to the agent's with the gateway.
        strip: &'a [&'a str],
        /// Rewrites the body on its way (its length changes, so it goes out chunked).
        rewrite: Option<&'a mut dyn Rewrite>,
    },
    /// Gather the body into `body` (at most `limit` bytes); the head is described in the
    /// outcome.
    Gather {
        body: &'a mut Vec<u8>,
        scratch: &'a mut Vec<u8>,
        limit: usize,
    },
}

/// Largest non-2xx body gathered for translation instead of relayed.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What happened, for the response, the audit line and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    pub body_bytes: u64,
    pub scrubbed: u32,
    /// The response was relayed but the agent's connection must now close (the body was
    /// close-delimited, or the agent asked).
    pub client_close: bool,
    /// Content type of a gathered response.
    pub content_type: Option<String>,
    /// `Mcp-Session-Id` of a gathered response (an upstream MCP server's session).
    pub mcp_session_id: Option<String>,
    pub reused_connection: bool,
}

/// Result of an exchange. When `head_sent` is set and the result is an error, the agent
/// already has a partial response: the only honest move left is to close its connection.
pub struct Exchange {
    pub result: Result<Outcome, ProxyError>,
    pub head_sent: bool,
}

async fn read_some(
    conn: &mut UpstreamConn,
    timeout: Duration,
    pool: &Pool,
) -> Result<usize, ProxyError> {
    if conn.buf.capacity() - conn.buf.len() < 4096 {
        conn.buf.reserve(16 * 1024);
    }
    let buf = std::mem::take(&mut conn.buf);
    let len = buf.len();
    let cap = buf.capacity();
    match conn
        .deadline
        .within(timeout, conn.stream.read(buf.slice_mut(len..cap)))
        .await
    {
        Ok((res, slice)) => {
            conn.buf = slice.into_inner();
            res.map_err(|e| ProxyError::Io {
                upstream: pool.spec.name.clone(),
                detail: e.to_string(),
            })
        }
        Err(_) => Err(ProxyError::Timeout {
            upstream: pool.spec.name.clone(),
            secs: timeout.as_secs_f64(),
        }),
    }
}

async fn flush_client(
    stream: &mut TcpStream,
    deadline: &mut Deadline,
    wbuf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), ProxyError> {
    if wbuf.is_empty() {
        return Ok(());
    }
    let buf = std::mem::take(wbuf);
    match deadline.within(timeout, stream.write_all(buf)).await {
        Ok((Ok(_), mut b)) => {
            b.clear();
            *wbuf = b;
            Ok(())
        }
        Ok((Err(_), mut b)) => {
            b.clear();
            *wbuf = b;
            Err(ProxyError::ClientGone)
        }
        Err(_) => Err(ProxyError::ClientGone),
    }
}

/// Sends `req` (a complete request) and relays the response into `sink`. `req` is handed
/// back for reuse.
pub async fn exchange(
    pool: &Pool,
    req: &mut Vec<u8>,
    method: Method,
    mut scrubber: Option<&mut Scrubber<'_>>,
    max_head: usize,
    sink: Sink<'_>,
) -> Exchange {
    let upstream = || pool.spec.name.clone();
    let timeout = pool.spec.response_timeout;
    let mut attempt = 0;
    let (mut conn, reused, mut head) = loop {
        attempt += 1;
        let (mut conn, reused) = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                return Exchange {
                    result: Err(e),
                    head_sent: false,
                };
            }
        };
        let may_retry = reused && attempt == 1 && method.is_idempotent();
        let buf = std::mem::take(req);
        let wrote = match conn
            .deadline
            .within(timeout, conn.stream.write_all(buf))
            .await
        {
            Ok((r, b)) => {
                *req = b;
                r.map(|_| ()).map_err(|e| ProxyError::Io {
                    upstream: upstream(),
                    detail: e.to_string(),
                })
            }
            Err(_) => Err(ProxyError::Timeout {
                upstream: upstream(),
                secs: timeout.as_secs_f64(),
            }),
        };
        if let Err(e) = wrote {
            if may_retry {
                continue;
            }
            return Exchange {
                result: Err(e),
                head_sent: false,
            };
        }
        conn.buf.clear();
        let head = loop {
            match read_some(&mut conn, timeout, pool).await {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e)
                    if may_retry
                        && conn.buf.is_empty()
                        && !matches!(e, ProxyError::Timeout { .. }) =>
                {
                    break None;
                }
                Err(e) => {
                    return Exchange {
                        result: Err(e),
                        head_sent: false,
                    };
                }
            }
            match parse_response(&conn.buf, max_head, method, &mut conn.relay) {
                Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                    // Interim responses (100 Continue, 103 Early Hints) are dropped.
                    conn.relay = h.relay;
                    conn.buf.drain(..h.len);
                }
                Ok(Some(h)) => break Some(h),
                Ok(None) => {}
                Err(e) => {
                    return Exchange {
                        result: Err(ProxyError::BadResponse {
                            upstream: upstream(),
                            detail: e.to_string(),
                        }),
                        head_sent: false,
                    };
                }
            }
        };
        match head {
            Some(h) => break (conn, reused, h),
            None if may_retry && conn.buf.is_empty() => continue,
            None => {
                return Exchange {
                    result: Err(ProxyError::Closed {
                        upstream: upstream(),
                    }),
                    head_sent: false,
                };
            }
        }
    };
    let mut out = Outcome {
        status: head.status,
        reused_connection: reused,
        ..Outcome::default()
    };
    match sink {
        Sink::Client {
            scratch,
            relay_errors: false,
            ..
        } if !(200..300).contains(&head.status) => {
            scratch.clear();
            conn.relay = std::mem::take(&mut head.relay);
            let body_start = head.len;
            let r = relay_body(
                &mut conn,
                pool,
                head.framing,
                body_start,
                &mut scrubber,
                &mut |piece: &[u8], scr: &mut Option<&mut Scrubber<'_>>, out_buf: &mut Vec<u8>| {
                    emit(piece, scr, out_buf, &mut Vec::new(), false)
                },
                scratch,
                None,
                ERROR_BODY_LIMIT,
                &mut out,
            )
            .await;
            if let Some(s) = scrubber {
                s.finish(scratch);
            }
            if let Ok(true) = r
                && !head.close
            {
                pool.put(conn);
            }
            Exchange {
                result: Ok(out),
                head_sent: false,
            }
        }
        Sink::Client {
            stream,
            wbuf,
            scratch,
            extra,
            close,
            http10,
            write_timeout,
            deadline,
            strip,
            mut rewrite,
            ..
        } => {
            wbuf.clear();
            if let Some(r) = rewrite.as_deref_mut() {
                r.begin(head.content_type.as_ref().map(|c| &conn.buf[c.clone()]));
            }
            // A rewritten body's length is not known up front.
            let rewritten = rewrite.is_some() && head.framing != Framing::None;
            let chunk_out = match head.framing {
                Framing::Chunked | Framing::UntilClose => !http10,
                Framing::Length(_) => rewritten && !http10,
                Framing::None => false,
            };
            let client_close = close
                || (http10
                    && (rewritten || !matches!(head.framing, Framing::Length(_) | Framing::None)));
            out.client_close = client_close;
            wbuf.extend_from_slice(b"HTTP/1.1 ");
            push_u64(wbuf, u64::from(head.status));
            wbuf.push(b' ');
            wbuf.extend_from_slice(reason(head.status).as_bytes());
            wbuf.extend_from_slice(b"\r\n");
            for (n, v) in &head.relay {
                let name = &conn.buf[n.clone()];
                if strip
                    .iter()
                    .any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
                {
                    continue;
                }
                wbuf.extend_from_slice(&conn.buf[n.clone()]);
                wbuf.extend_from_slice(b": ");
                let vstart = wbuf.len();
                wbuf.extend_from_slice(&conn.buf[v.clone()]);
                if let Some(s) = scrubber.as_deref_mut() {
                    out.scrubbed += s.mask_all(&mut wbuf[vstart..]);
                }
                wbuf.extend_from_slice(b"\r\n");
            }
            conn.relay = std::mem::take(&mut head.relay);
            wbuf.extend_from_slice(extra);
            match head.framing {
                Framing::Length(_) if rewritten && chunk_out => {
                    wbuf.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                }
                Framing::Length(_) if rewritten => {}
                Framing::Length(n) => {
                    wbuf.extend_from_slice(b"Content-Length: ");
                    push_u64(wbuf, n);
                    wbuf.extend_from_slice(b"\r\n");
                }
                Framing::None if !matches!(head.status, 204 | 304) && method != Method::Head => {
                    wbuf.extend_from_slice(b"Content-Length: 0\r\n");
                }
                Framing::None => {}
                _ if chunk_out => wbuf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
                _ => {}
            }
            if client_close {
                wbuf.extend_from_slice(b"Connection: close\r\n");
            } else if http10 {
                // An HTTP/1.0 client closes unless told the connection stays.
                wbuf.extend_from_slice(b"Connection: keep-alive\r\n");
            }
            wbuf.extend_from_slice(b"\r\n");
            let body_start = head.len;
            let r = relay_body(
                &mut conn,
                pool,
                head.framing,
                body_start,
                &mut scrubber,
                &mut |piece: &[u8], scr: &mut Option<&mut Scrubber<'_>>, wbuf2: &mut Vec<u8>| {
                    match rewrite.as_deref_mut() {
                        None => emit(piece, scr, wbuf2, scratch, chunk_out),
                        Some(r) => {
                            let plain = match scr.as_deref_mut() {
                                Some(s) => {
                                    scratch.clear();
                                    s.feed(piece, scratch);
                                    r.feed(scratch)
                                }
                                None => r.feed(piece),
                            };
                            put(wbuf2, plain, chunk_out);
                        }
                    }
                },
                wbuf,
                Some((stream, deadline, write_timeout)),
                usize::MAX,
                &mut out,
            )
            .await;
            let result = match r {
                Ok(reusable) => {
                    scratch.clear();
                    if let Some(s) = scrubber.as_deref_mut() {
                        s.finish(scratch);
                        out.scrubbed = s.scrubbed;
                    }
                    match rewrite {
                        Some(r) => {
                            put(wbuf, r.feed(scratch), chunk_out);
                            put(wbuf, r.finish(), chunk_out);
                        }
                        None => put(wbuf, scratch, chunk_out),
                    }
                    if chunk_out {
                        wbuf.extend_from_slice(LAST_CHUNK);
                    }
                    match flush_client(stream, deadline, wbuf, write_timeout).await {
                        Ok(()) => {
                            if reusable && !head.close {
                                pool.put(conn);
                            }
                            Ok(out)
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            Exchange {
                result,
                head_sent: true,
            }
        }
        Sink::Gather {
            body,
            scratch,
            limit,
        } => {
            body.clear();
            conn.relay = std::mem::take(&mut head.relay);
            out.content_type = head
                .content_type
                .as_ref()
                .map(|r| String::from_utf8_lossy(&conn.buf[r.clone()]).into_owned());
            out.mcp_session_id = conn
                .relay
                .iter()
                .find(|(n, _)| conn.buf[n.clone()].eq_ignore_ascii_case(b"mcp-session-id"))
                .map(|(_, v)| String::from_utf8_lossy(&conn.buf[v.clone()]).into_owned());
            let body_start = head.len;
            let r = relay_body(
                &mut conn,
                pool,
                head.framing,
                body_start,
                &mut scrubber,
                &mut |piece: &[u8], scr: &mut Option<&mut Scrubber<'_>>, out_buf: &mut Vec<u8>| {
                    emit(piece, scr, out_buf, scratch, false)
                },
                body,
                None,
                limit,
                &mut out,
            )
            .await;
            let result = match r {
                Ok(reusable) => {
                    if let Some(s) = scrubber {
                        s.finish(body);
                        out.scrubbed = s.scrubbed;
                    }
                    if body.len() > limit {
                        Err(ProxyError::TooLarge {
                            upstream: upstream(),
                            limit,
                        })
                    } else {
                        if reusable && !head.close {
                            pool.put(conn);
                        }
                        Ok(out)
                    }
                }
                Err(e) => Err(e),
            };
            Exchange {
                result,
                head_sent: false,
            }
        }
    }
}

fn emit(
    piece: &[u8],
    scrubber: &mut Option<&mut Scrubber<'_>>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    chunked: bool,
) {
    match (scrubber.as_deref_mut(), chunked) {
        (Some(s), true) => {
            scratch.clear();
            s.feed(piece, scratch);
            encode_chunk(out, scratch);
        }
        (Some(s), false) => s.feed(piece, out),
        (None, _) => put(out, piece, chunked),
    }
}

/// Appends body bytes as they go to the client: as a chunk, or as they are (an empty
/// piece adds nothing either way).
fn put(out: &mut Vec<u8>, piece: &[u8], chunked: bool) {
    if chunked {
        encode_chunk(out, piece);
    } else {
        out.extend_from_slice(piece);
    }
}

type Emit<'e> = dyn FnMut(&[u8], &mut Option<&mut Scrubber<'_>>, &mut Vec<u8>) + 'e;

/// Reads the body per `framing`, passing each piece to `emit` (which appends to `out`) and
/// flushing `out` to the client after each read when there is one. Returns whether the
/// upstream connection is clean for reuse.
#[allow(clippy::too_many_arguments)]
async fn relay_body(
    conn: &mut UpstreamConn,
    pool: &Pool,
    framing: Framing,
    body_start: usize,
    scrubber: &mut Option<&mut Scrubber<'_>>,
    emit: &mut Emit<'_>,
    out: &mut Vec<u8>,
    mut client: Option<(&mut TcpStream, &mut Deadline, Duration)>,
    limit: usize,
    outcome: &mut Outcome,
) -> Result<bool, ProxyError> {
    let timeout = pool.spec.response_timeout;
    let too_large = || ProxyError::TooLarge {
        upstream: pool.spec.name.clone(),
        limit,
    };
    let mut start = body_start;
    match framing {
        Framing::None => Ok(conn.buf.len() == body_start),
        Framing::Length(total) => {
            let mut left = total;
            loop {
                let avail = (conn.buf.len() - start) as u64;
                let take = avail.min(left) as usize;
                emit(&conn.buf[start..start + take], scrubber, out);
                outcome.body_bytes += take as u64;
                left -= take as u64;
                let excess = avail > take as u64;
                if client.is_none() && out.len() > limit {
                    return Err(too_large());
                }
                // The whole body is in: the caller sends it with the scrubber's held-back
                // tail in one write. Flushing here split every response in two segments
                // (and two ACKs) for the tail's few bytes.
                if left == 0 {
                    return Ok(!excess);
                }
                if let Some((s, d, wt)) = client.as_mut() {
                    flush_client(s, d, out, *wt).await?;
                }
                conn.buf.clear();
                start = 0;
                if read_some(conn, timeout, pool).await? == 0 {
                    return Err(ProxyError::Closed {
                        upstream: pool.spec.name.clone(),
                    });
                }
            }
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new(u64::MAX);
            loop {
                let used = dec
                    .decode(&conn.buf[start..], |piece| {
                        outcome.body_bytes += piece.len() as u64;
                        emit(piece, scrubber, out);
                    })
                    .map_err(|e| ProxyError::BadResponse {
                        upstream: pool.spec.name.clone(),
                        detail: e.to_string(),
                    })?;
                let excess = start + used < conn.buf.len();
                if client.is_none() && out.len() > limit {
                    return Err(too_large());
                }
                if dec.is_done() {
                    return Ok(!excess);
                }
                if let Some((s, d, wt)) = client.as_mut() {
                    flush_client(s, d, out, *wt).await?;
                }
                conn.buf.clear();
                start = 0;
                if read_some(conn, timeout, pool).await? == 0 {
                    return Err(ProxyError::Closed {
                        upstream: pool.spec.name.clone(),
                    });
                }
            }
        }
        Framing::UntilClose => loop {
            emit(&conn.buf[start..], scrubber, out);
            outcome.body_bytes += (conn.buf.len() - start) as u64;
            if let Some((s, d, wt)) = client.as_mut() {
                flush_client(s, d, out, *wt).await?;
            } else if out.len() > limit {
                return Err(too_large());
            }
            conn.buf.clear();
            start = 0;
            if read_some(conn, timeout, pool).await? == 0 {
                return Ok(false);
            }
        },
    }
}
