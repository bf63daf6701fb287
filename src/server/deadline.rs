//! A connection's timer: one timer-wheel entry per connection, shared by all of its
//! reads and writes, instead of one created, registered and dropped per operation.
//!
//! `monoio::time::timeout` builds a `Sleep` for every operation, inserts it into the
//! worker's timer wheel when first polled and removes it on drop: with four timed
//! operations per proxied call that was ~1,300 instructions a call (~5% of the worker's).
//! Here the entry stays armed. An operation's own deadline is compared with the armed
//! one: the timer is moved earlier when needed (so a timeout never fires late), and when
//! it fires before the current operation's deadline (it was armed for an earlier
//! operation) it is simply moved on. Operations with the same timeout in a row, the
//! common case, never touch the wheel; a connection gets at most one spurious wake-up
//! per timeout period.

use monoio::time::{Duration, Instant, Sleep};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// An operation did not finish within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Default for Deadline {
    fn default() -> Self {
        Self::new()
    }
}

impl Deadline {
    /// Unarmed until the first operation. Must be created on a runtime with timers.
    pub fn new() -> Self {
        // A year out: "never" for a connection, and far from overflowing an Instant.
        let armed = Instant::now() + Duration::from_secs(365 * 86_400);
        Deadline {
            sleep: Box::pin(monoio::time::sleep_until(armed)),
            armed,
        }
    }

    /// Runs `op` for at most `timeout`. The operation is dropped (and so cancelled) when
    /// it runs out of time.
    pub async fn within<F: Future>(
        &mut self,
        timeout: Duration,
        op: F,
    ) -> Result<F::Output, Elapsed> {
        let due = Instant::now().checked_add(timeout).unwrap_or(self.armed);
        if due < self.armed {
            self.sleep.as_mut().reset(due);
            self.armed = due;
        }
        let mut op = std::pin::pin!(op);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = op.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            loop {
                match self.sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if Instant::now() >= due => return Poll::Ready(Err(Elapsed)),
                    // Armed for an earlier operation: move it on to this one's deadline.
                    Poll::Ready(()) => {
                        self.sleep.as_mut().reset(due);
                        self.armed = due;
                    }
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn rt<F: Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn an_operation_that_finishes_in_time_gives_its_output() {
        rt(async {
            let mut d = Deadline::new();
            for i in 0..3 {
                let r = d
                    .within(Duration::from_millis(200), async move {
                        monoio::time::sleep(Duration::from_millis(5)).await;
                        i
                    })
                    .await;
                assert_eq!(r, Ok(i));
            }
        });
    }

    #[test]
    fn a_shorter_timeout_after_a_longer_one_still_fires_on_time() {
        rt(async {
            let mut d = Deadline::new();
            assert_eq!(d.within(Duration::from_secs(60), async { 1 }).await, Ok(1));
            let started = std::time::Instant::now();
            let r = d
                .within(
                    Duration::from_millis(30),
                    monoio::time::sleep(Duration::from_secs(10)),
                )
                .await;
            assert_eq!(r, Err(Elapsed));
            let took = started.elapsed();
            assert!(took < Duration::from_secs(5), "fired after {took:?}");
            assert!(
                took >= Duration::from_millis(30),
                "fired early, after {took:?}"
            );
        });
    }

    #[test]
    fn a_timer_armed_for_an_earlier_operation_does_not_cut_a_later_one_short() {
        rt(async {
            let mut d = Deadline::new();
            // Arms the timer for ~40 ms from now.
            assert_eq!(d.within(Duration::from_millis(40), async {}).await, Ok(()));
            monoio::time::sleep(Duration::from_millis(20)).await;
            // Due ~80 ms from the start: the armed timer fires first and must be moved on.
            let done = Rc::new(Cell::new(false));
            let flag = done.clone();
            let r = d
                .within(Duration::from_millis(60), async move {
                    monoio::time::sleep(Duration::from_millis(45)).await;
                    flag.set(true);
                })
                .await;
            assert_eq!(r, Ok(()));
            assert!(done.get());
        });
    }
}
