//! A target as a user writes it on the command line: `HOST:PORT`, `[V6]:PORT`, or a plain
//! `http://` URL (what wrk, hey and oha take), resolved once at start, with the `Host`
//! header it implies. Resolving once keeps DNS out of the measured run; the name is kept
//! for the header, so a proxy that routes by virtual host (nginx `server_name`, an
//! ingress) sees the name the user gave, as it would from any other client.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// Where to connect, and what to call it in the `Host` header and in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host[:port]` as given (no port when a URL left it at 80).
    pub authority: String,
}

impl Endpoint {
    /// An address already resolved, named by itself.
    pub fn literal(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            authority: addr.to_string(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority == self.addr.to_string() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.authority, self.addr)
        }
    }
}

/// Parses and resolves `s`. Errors say what form was expected; none of them panics.
pub fn parse(s: &str) -> Result<Endpoint, String> {
    let (authority, default_port) = split_url(s.trim())?;
    let (host, port) = split_host_port(authority, default_port)?;
    let addr = resolve(host, port)?;
    Ok(Endpoint {
        addr,
        authority: authority.to_owned(),
    })
}

/// The authority of `s`, and the port a URL implies when it names none.
fn split_url(s: &str) -> Result<(&str, Option<u16>), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok((s, None));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(
            "https is not supported: the generator speaks plain HTTP/1.1 (give the target's plaintext listener, e.g. http://HOST:PORT)"
                .into(),
        );
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "`{scheme}://` is not a scheme the generator speaks: give HOST:PORT or http://HOST:PORT"
        ));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "the workload sets each request's path itself, so the URL must end at the host and port (`{path}` is extra)"
        ));
    }
    if authority.contains('@') {
        return Err("user information in the URL is not supported: give credentials with --credential or --deployment".into());
    }
    Ok((authority, Some(80)))
}

fn split_host_port(authority: &str, default_port: Option<u16>) -> Result<(&str, u16), String> {
    if authority.is_empty() {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`, e.g. [::1]:8080")?;
        match after {
            "" => (v6, None),
            p => (
                v6,
                Some(
                    p.strip_prefix(':')
                        .ok_or(format!("expected `:PORT` after `[{v6}]`, found `{p}`"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "`{authority}`: write an IPv6 address in brackets, e.g. [::1]:8080"
                ));
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{authority}` has no host before the port"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(format!("`{p}` is not a port (1 to 65535)"))?,
        (None, Some(p)) => p,
        (None, None) => {
            return Err(format!(
                "`{authority}` has no port: give HOST:PORT, e.g. {authority}:8080"
            ));
        }
    };
    Ok((host, port))
}

/// The first address `host` resolves to, IPv4 before IPv6: a `localhost` that resolves to
/// both most often has the server on 127.0.0.1, as the built-in servers do.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or(format!("`{host}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String) {
        let e = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (e.addr.to_string(), e.authority)
    }

    #[test]
    fn literal_addresses_name_themselves() {
        assert_eq!(
            ok("127.0.0.1:8080"),
            ("127.0.0.1:8080".into(), "127.0.0.1:8080".into())
        );
        assert_eq!(ok("[::1]:9000"), ("[::1]:9000".into(), "[::1]:9000".into()));
        let e = parse("127.0.0.1:8080").unwrap();
        assert_eq!(e, Endpoint::literal(e.addr));
        assert_eq!(e.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn urls_give_their_authority_and_default_port() {
        assert_eq!(
            ok("http://127.0.0.1:8080"),
            ("127.0.0.1:8080".into(), "127.0.0.1:8080".into())
        );
        assert_eq!(
            ok("HTTP://127.0.0.1:8080/"),
            ("127.0.0.1:8080".into(), "127.0.0.1:8080".into())
        );
        // No port in a URL is port 80, and the Host header then carries none (RFC 9110 §7.2).
        assert_eq!(
            ok("http://127.0.0.1"),
            ("127.0.0.1:80".into(), "127.0.0.1".into())
        );
        assert_eq!(ok("http://[::1]/"), ("[::1]:80".into(), "[::1]".into()));
    }

    #[test]
    fn names_resolve_once_and_keep_the_name_for_the_host_header() {
        let e = parse("localhost:8080").unwrap();
        assert!(e.addr.ip().is_loopback(), "{e}");
        assert_eq!(e.addr.port(), 8080);
        assert_eq!(e.authority, "localhost:8080");
        assert!(e.to_string().starts_with("localhost:8080 ("), "{e}");
    }

    #[test]
    fn bad_targets_say_what_to_write() {
        for (s, says) in [
            ("https://gw:8443", "https is not supported"),
            ("ftp://gw:21", "not a scheme"),
            (
                "http://127.0.0.1:8080/v1/tools",
                "must end at the host and port",
            ),
            ("http://u:p@127.0.0.1:8080", "user information"),
            ("127.0.0.1", "has no port"),
            (
                "localhost",
                "has no port: give HOST:PORT, e.g. localhost:8080",
            ),
            ("127.0.0.1:99999", "`99999` is not a port"),
            ("127.0.0.1:0", "`0` is not a port"),
            ("127.0.0.1:http", "`http` is not a port"),
            (":8080", "no host before the port"),
            ("", "expected HOST:PORT"),
            ("::1:8080", "in brackets"),
            ("[::1", "closing `]`"),
            ("[::1]8080", "expected `:PORT`"),
        ] {
            let e = parse(s).expect_err(s);
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
