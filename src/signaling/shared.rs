//! What other threads share with the loop: lock-free queues, the eventfd that wakes it, published counters.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::SegQueue;

use super::counters::{COUNTER_FIELDS, Counters};
use super::dns::DnsCompletion;

/// Work for the loop that is not the handler's own message type.
#[derive(Debug)]
pub(crate) enum Control {
    Stop,
    Dns(DnsCompletion),
}

/// Shared between the loop and every thread that talks to it.
pub(crate) struct Shared {
    pub(crate) control: SegQueue<Control>,
    efd: OwnedFd,
    counters: [AtomicU64; COUNTER_FIELDS],
}

impl Shared {
    pub(crate) fn new() -> std::io::Result<Self> {
        // Blocking mode: the ring's read on it must wait (poll-armed) rather than fail with EAGAIN, which
        // some kernels report for O_NONBLOCK files. Writers never block: the counter cannot realistically
        // reach its 2^64-2 ceiling between two reads.
        // SAFETY: eventfd(2) takes no pointers; a non-negative return is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            control: SegQueue::new(),
            // SAFETY: fd was just created and is owned by nobody else.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    pub(crate) fn eventfd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    pub(crate) fn push(&self, c: Control) {
        self.control.push(c);
        self.wake();
    }

    /// Makes the loop's pending eventfd read complete.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    pub(crate) fn publish(&self, c: &Counters) {
        for (slot, v) in self.counters.iter().zip(c.as_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Counters {
        Counters::from_array(std::array::from_fn(|i| {
            self.counters[i].load(Ordering::Relaxed)
        }))
    }
}

/// A cloneable, `Send` handle other threads (control, management) use to reach the loop.
pub struct LoopHandle<M> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) messages: Arc<SegQueue<M>>,
}

impl<M> Clone for LoopHandle<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            messages: self.messages.clone(),
        }
    }
}

impl<M> LoopHandle<M> {
    /// Hands `msg` to the handler's `on_message` on the loop thread.
    pub fn send(&self, msg: M) {
        self.messages.push(msg);
        self.shared.wake();
    }

    /// Asks the loop to stop after the current batch; `run` then returns.
    pub fn stop(&self) {
        self.shared.push(Control::Stop);
    }

    /// Counters as of the loop's last iteration.
    pub fn counters(&self) -> Counters {
        self.shared.snapshot()
    }
}
