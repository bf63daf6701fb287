//! A bare monoio TCP hop: it accepts a connection, opens one to the upstream and copies
//! bytes both ways — no HTTP parsing, no envelope, no policy, no audit. It is the floor for
//! any proxy on the same runtime, machine and pinning, so `compare` measures it beside
//! Portcullis: what Portcullis adds over the hop is the cost of its pipeline, and what
//! the hop adds over direct is the cost of being a proxy at all.

use portcullis::server::Driver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running hop; `shutdown` stops it.
pub struct HopHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HopHandle {
    /// Runs until the process is stopped.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops accepting and waits for the threads (open connections are dropped).
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Copy buffer per direction: a whole request or response in one read, as a proxy's
/// would be.
const BUF: usize = 16 * 1024;

/// Starts `threads` hop threads (`loadtest-hop-N`) listening on `listen`, each relaying
/// to `upstream`.
pub fn start(
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
    driver: Driver,
) -> std::io::Result<HopHandle> {
    let listeners = portcullis::server::listen::bind_reuseport(listen, threads.max(1))?;
    let addr = listeners[0].local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        l.set_nonblocking(true)?;
        let stop = Arc::clone(&stop);
        let name = format!("loadtest-hop-{i}");
        handles.push(
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let run = accept_loop(l, upstream, stop);
                    if let Err(e) = portcullis::server::runtime::block_on(driver, run) {
                        eprintln!("{name}: runtime failed to start: {e}");
                    }
                })?,
        );
    }
    Ok(HopHandle {
        addr,
        stop,
        threads: handles,
    })
}

async fn accept_loop(l: std::net::TcpListener, upstream: SocketAddr, stop: Arc<AtomicBool>) {
    let Ok(listener) = monoio::net::TcpListener::from_std(l) else {
        eprintln!("loadtest hop: cannot register its listener");
        return;
    };
    let cancel = portcullis::server::listen::cancel_on_stop(&stop);
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((client, _)) => {
                monoio::spawn(relay(client, upstream));
            }
            Err(_) if stop.load(Ordering::Acquire) => return,
            Err(_) => monoio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One client connection: its own upstream connection, a task per direction. When the
/// client stops sending, the upstream is told (write shutdown), which ends the other way.
async fn relay(client: monoio::net::TcpStream, upstream: SocketAddr) {
    use monoio::io::{AsyncWriteRent, Splitable};
    let Ok(up) = monoio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    monoio::spawn(async move {
        copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    copy(&mut cr, &mut uw).await;
    let _ = uw.shutdown().await;
}

async fn copy<R, W>(from: &mut R, to: &mut W)
where
    R: monoio::io::AsyncReadRent,
    W: monoio::io::AsyncWriteRent,
{
    use monoio::io::AsyncWriteRentExt;
    let mut buf = Vec::with_capacity(BUF);
    loop {
        let (r, b) = from.read(buf).await;
        match r {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let (w, mut b) = to.write_all(b).await;
        if w.is_err() {
            return;
        }
        b.clear();
        buf = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Bytes go through both ways unchanged, on a kept-alive connection, and closing the
    /// client's side reaches the upstream.
    #[test]
    fn relays_both_ways_and_passes_the_close_on() {
        let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = up.accept().unwrap();
            // A hop that never passes the close on fails the test instead of hanging it.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return got; // the client's close arrived
                }
                got.extend_from_slice(&buf[..n]);
                s.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
            }
        });
        let hop = start("127.0.0.1:0".parse().unwrap(), up_addr, 1, Driver::Auto).unwrap();
        let mut c = std::net::TcpStream::connect(hop.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for word in ["ping", "pong"] {
            c.write_all(word.as_bytes()).unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, word.to_ascii_uppercase().as_bytes());
        }
        drop(c);
        assert_eq!(server.join().unwrap(), b"pingpong");
        hop.shutdown();
    }
}
