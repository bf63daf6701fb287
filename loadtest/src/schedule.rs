//! The open-loop schedule: request `i` is intended to be sent at `start + i / rate`, no
//! matter how the system under test is doing. Latency is measured from the intended time,
//! so a stall delays every request scheduled during it and shows up as latency, instead of
//! silently lowering the offered load (coordinated omission).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    /// Nanoseconds between intended sends.
    pub interval_ns: f64,
    pub total: u64,
}

impl Schedule {
    /// `rate` requests per second for `duration`, starting at `start`.
    pub fn new(start: Instant, rate: f64, duration: Duration) -> Schedule {
        let total = (rate * duration.as_secs_f64()).floor() as u64;
        Schedule {
            start,
            interval_ns: 1e9 / rate,
            total,
        }
    }

    /// Intended send time of request `i`.
    pub fn at(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// The requests connection `conn` of `conns` sends: `conn`, `conn + conns`, ...
    pub fn for_connection(&self, conn: u64, conns: u64) -> impl Iterator<Item = u64> + '_ {
        (conn..self.total).step_by(conns.max(1) as usize)
    }
}

/// Yields once to the runtime, letting other tasks on this thread run.
pub struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Waits until `t` with microsecond precision: monoio's timer has millisecond resolution,
/// so the last stretch is spent yielding to the connection's neighbours rather than
/// sleeping. (At high rates a request is always due within a millisecond, so a
/// generator thread stays busy: pin it away from the gateway's cores.)
pub async fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(2500) {
            monoio::time::sleep(left - Duration::from_micros(1500)).await;
        } else {
            YieldNow(false).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let s = Schedule::new(Instant::now(), 1000.0, Duration::from_secs(2));
        assert_eq!(s.total, 2000);
        assert_eq!(s.at(1000) - s.at(0), Duration::from_secs(1));
        assert_eq!(s.at(1) - s.at(0), Duration::from_millis(1));
        let mine: Vec<u64> = s.for_connection(1, 4).take(3).collect();
        assert_eq!(mine, [1, 5, 9]);
        let all: u64 = (0..4).map(|c| s.for_connection(c, 4).count() as u64).sum();
        assert_eq!(
            all, s.total,
            "every scheduled request belongs to exactly one connection"
        );
    }
}
