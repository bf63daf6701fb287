//! A small blocking HTTP/1.1 client over `std::net`, used by the demo walk-through and the
//! integration tests to talk to the gateway like an agent would: keep-alive, bearer
//! envelope, Content-Length or chunked responses.

use crate::http::ChunkedDecoder;
use crate::http::head::{Framing, Method, field, parse_response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response as received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One keep-alive connection.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            host: addr.to_string(),
        })
    }

    /// Sends a request with the given extra header lines and body; reads the response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        self.read_response(if method == "HEAD" {
            Method::Head
        } else {
            Method::Get
        })
    }

    pub fn read_response(&mut self, method: Method) -> std::io::Result<Response> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let mut relay = Vec::new();
        let head = loop {
            if let Some(h) = parse_response(&self.buf, 64 * 1024, method, &mut relay)
                .map_err(|e| bad(e.to_string()))?
            {
                break h;
            }
            self.fill()?;
        };
        // Read every header (relayed or not) for the caller.
        let text = String::from_utf8_lossy(&self.buf[..head.len]).into_owned();
        let headers = text
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let _ = field;
        let mut body = Vec::new();
        let mut pos = head.len;
        match head.framing {
            Framing::None => {}
            Framing::Length(n) => {
                while self.buf.len() < pos + n as usize {
                    self.fill()?;
                }
                body.extend_from_slice(&self.buf[pos..pos + n as usize]);
                pos += n as usize;
            }
            Framing::Chunked => {
                let mut dec = ChunkedDecoder::new(u64::MAX);
                loop {
                    pos += dec
                        .decode(&self.buf[pos..], |d| body.extend_from_slice(d))
                        .map_err(|e| bad(e.to_string()))?;
                    if dec.is_done() {
                        break;
                    }
                    self.fill()?;
                }
            }
            Framing::UntilClose => {
                body.extend_from_slice(&self.buf[pos..]);
                let mut rest = Vec::new();
                self.stream.read_to_end(&mut rest)?;
                body.extend_from_slice(&rest);
                pos = self.buf.len();
            }
        }
        self.buf.drain(..pos);
        Ok(Response {
            status: head.status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Raw access for tests that send malformed bytes.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
