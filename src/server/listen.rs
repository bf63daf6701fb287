//! Binding the per-core listening sockets: one SO_REUSEPORT socket per worker on the same
//! address, so the kernel spreads connections across cores without an accept lock. All
//! sockets are bound on the calling thread, before any worker starts, so a bad or busy
//! address fails start-up with a clear error, and port 0 resolves to one port for all.
//!
//! SO_REUSEPORT would also let a second gateway (same user) bind the same address and
//! silently take half of the connections, for example a stale instance that did not exit
//! or a second `serve` started by mistake; so a fixed address is first claimed by a socket
//! without it, which fails while anything else listens there.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A handle that cancels a pending accept once `stop` is set (checked every 50 ms by a
/// task on the current runtime). Cancelled rather than dropped, so no connection the
/// kernel already handed over is lost.
pub fn cancel_on_stop(stop: &Arc<AtomicBool>) -> monoio::io::CancelHandle {
    let canceller = monoio::io::Canceller::new();
    let handle = canceller.handle();
    let watch = Arc::clone(stop);
    monoio::spawn(async move {
        while !watch.load(Ordering::Acquire) {
            monoio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = canceller.cancel();
    });
    handle
}

pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        ensure_unclaimed(addr)?;
    }
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

/// Fails with `AddrInUse` when another socket listens on `addr`, even one that allows
/// port sharing. SO_REUSEADDR only lets the probe past connections in TIME_WAIT, so a
/// restart right after a stop still works.
fn ensure_unclaimed(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                e.kind(),
                format!("{addr} is already in use by another process (is another gateway still running?)"),
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_cannot_share_a_fixed_address() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(
            first[1].local_addr().unwrap(),
            addr,
            "the workers share one port"
        );
        let err = bind_reuseport(addr, 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"), "{err}");
        drop(first);
        // Once the first is gone, the address is free again.
        assert_eq!(bind_reuseport(addr, 1).unwrap().len(), 1);
    }
}
