//! Binding the per-core listening sockets: one SO_REUSEPORT socket per worker on the same
//! address, so the kernel spreads connections across cores without an accept lock. All
//! sockets are bound on the calling thread, before any worker starts, so a bad or busy
//! address fails start-up with a clear error, and port 0 resolves to one port for all.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;

pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.bind(&addr.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        if addr.port() == 0 {
            addr = l.local_addr()?;
        }
        out.push(l);
    }
    Ok(out)
}
