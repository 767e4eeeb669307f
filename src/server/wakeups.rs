//! Which part of a connection's task a wakeup was for. An HTTP/1.1
//! connection's task polls two parts: the client connection (with the
//! request handler inside it) and the upstream connections beside it
//! ([`super::scope::Side`]). Their wakeups are mostly for one another and
//! come while the task is being polled: the handler hands a request to the
//! upstream connection's channel, the upstream connection hands the answer
//! and then its body back. With the task's own waker each of those
//! schedules the whole task again, and every poll runs both parts: five
//! polls of everything per proxied request.
//!
//! Here each part gets a waker of its own that marks the part woken, and
//! wakes the task only when it is not being polled. The driver then polls
//! only the parts that were woken, again in the same poll while one woke
//! the other, and a request costs two polls of the task (its two socket
//! events), each running only what has something to do.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Wake, Waker};

/// The client connection's bit for [`Wakeups::take`].
pub(super) const CONN: u8 = 1;
/// The upstream connections' bit for [`Wakeups::take`].
pub(super) const SIDE: u8 = 2;

/// What the part wakers share: the parts woken since the last
/// [`Wakeups::take`], and whether the task is polling them now.
struct Shared {
    woken: AtomicU8,
    polling: AtomicBool,
    task: Waker,
}

/// One part's waker.
struct Part {
    shared: Arc<Shared>,
    bit: u8,
}

impl Wake for Part {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.woken.fetch_or(self.bit, SeqCst);
        // While polling, the driver sees the bit before it returns
        // (`Wakeups::end`); the task's waker would only poll it once more.
        if !self.shared.polling.load(SeqCst) {
            self.shared.task.wake_by_ref();
        }
    }
}

/// The part wakers of one connection task.
pub(super) struct Wakeups {
    shared: Arc<Shared>,
    /// Given to the client connection.
    pub(super) conn: Waker,
    /// Given to the upstream connections.
    pub(super) side: Waker,
}

impl Wakeups {
    /// Wakers for the task `task` wakes; both parts start woken.
    pub(super) fn new(task: &Waker) -> Self {
        let shared = Arc::new(Shared {
            woken: AtomicU8::new(CONN | SIDE),
            polling: AtomicBool::new(false),
            task: task.clone(),
        });
        let part = |bit| {
            Waker::from(Arc::new(Part {
                shared: Arc::clone(&shared),
                bit,
            }))
        };
        Self {
            conn: part(CONN),
            side: part(SIDE),
            shared,
        }
    }

    /// Whether these wakers wake `task`; tokio gives a task one waker for
    /// its life, but a future may be moved to another.
    pub(super) fn wakes(&self, task: &Waker) -> bool {
        self.shared.task.will_wake(task)
    }

    /// Marks the start of a poll of the parts.
    pub(super) fn begin(&self) {
        self.shared.polling.store(true, SeqCst);
    }

    /// Which of the parts in `mask` were woken since they were last taken;
    /// they are cleared, the others left as they are.
    pub(super) fn take(&self, mask: u8) -> u8 {
        self.shared.woken.fetch_and(!mask, SeqCst) & mask
    }

    /// Marks the end of a poll of the parts. Returns whether one was woken
    /// meanwhile and should be polled before the task sleeps.
    pub(super) fn end(&self) -> bool {
        self.shared.polling.store(false, SeqCst);
        self.shared.woken.load(SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_part_woken_while_polled_is_marked_and_the_task_is_left_alone() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(Arc::clone(&count));
        let w = Wakeups::new(&task);
        assert_eq!(w.take(CONN), CONN, "both parts start woken");
        assert_eq!(w.take(CONN | SIDE), SIDE);
        w.begin();
        w.side.wake_by_ref();
        assert_eq!(count.0.load(SeqCst), 0);
        assert!(w.end(), "the side was woken during the poll");
        assert_eq!(w.take(CONN), 0, "taking one part leaves the other");
        assert_eq!(w.take(SIDE), SIDE);
        assert!(!w.end());
        // Outside a poll, a wakeup wakes the task as well.
        w.conn.wake_by_ref();
        assert_eq!(count.0.load(SeqCst), 1);
        assert_eq!(w.take(CONN | SIDE), CONN);
        assert!(w.wakes(&task));
    }
}
