//! The open-loop schedule: request `i` is intended to be sent at `start + i / rate`, no
//! matter how the system under test is doing. Latency is measured from the intended time,
//! so a stall delays every request scheduled during it and shows up as latency, instead of
//! silently lowering the offered load (coordinated omission).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
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
}

/// Lets a spinning task give the rest of its thread a turn. monoio re-queues a task that
/// wakes itself while being polled at the *front* of the run queue, so a plain
/// self-waking yield would monopolise the thread (the connections' completions would
/// wait until the spin ends). Instead the spinner parks its waker here and wakes a helper
/// task, which wakes the spinner back from outside its poll: each then goes to the back
/// of the queue, behind every task that became ready meanwhile.
#[derive(Default)]
pub struct Yielder {
    spinner: RefCell<Option<Waker>>,
    helper: RefCell<Option<Waker>>,
    stopped: Cell<bool>,
}

impl Yielder {
    /// One turn at the back of the run queue.
    pub fn yield_back(&self) -> impl Future<Output = ()> + '_ {
        let mut parked = false;
        std::future::poll_fn(move |cx| {
            if parked {
                return Poll::Ready(());
            }
            parked = true;
            *self.spinner.borrow_mut() = Some(cx.waker().clone());
            let helper = self.helper.borrow_mut().take();
            if let Some(h) = helper {
                h.wake();
            }
            Poll::Pending
        })
    }

    /// The helper task: run it (spawned) beside the spinner for as long as it spins.
    pub async fn helper(self: Rc<Self>) {
        std::future::poll_fn(|cx| {
            if self.stopped.get() {
                return Poll::Ready(());
            }
            let spinner = self.spinner.borrow_mut().take();
            if let Some(s) = spinner {
                s.wake();
            }
            *self.helper.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Ends the helper task.
    pub fn stop(&self) {
        self.stopped.set(true);
        let helper = self.helper.borrow_mut().take();
        if let Some(h) = helper {
            h.wake();
        }
    }
}

/// Waits until `t` with microsecond precision, calling `spinning` on every turn of the
/// fine wait. monoio's timer has millisecond resolution (deadlines round up), so only the
/// coarse part is a timer sleep and the last stretch is spent yielding (through
/// `yielder`), which lets the thread's connections run meanwhile. While a task spins,
/// monoio never parks, so its timers do not fire: callers that need deadlines enforced
/// meanwhile do it in `spinning`. At high rates a request is always due within a
/// millisecond and the thread stays busy: pin the generator away from the system under
/// test. It also returns once an early stop is asked for (`crate::stop`), so a slow
/// schedule never holds a stopped run for more than a tenth of a second.
pub async fn wait_until(t: Instant, yielder: &Yielder, mut spinning: impl FnMut()) {
    loop {
        let now = Instant::now();
        if now >= t || crate::stop::requested() {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(2500) {
            let coarse = left - Duration::from_micros(1500);
            monoio::time::sleep(coarse.min(Duration::from_millis(100))).await;
        } else {
            spinning();
            yielder.yield_back().await;
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
    }
}
