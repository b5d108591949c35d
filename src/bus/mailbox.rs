//! One reader's bounded queue, shared by the topic router (a subscription's events) and the
//! shared subscriptions (a group member's results, `graphql::shared`).
//!
//! It holds at most `SUBSCRIBER_BUFFER` items. When it is full the oldest is dropped and
//! counted, and the reader's next `recv` says how many it missed (as a broadcast receiver's
//! `Lagged` did), so a slow reader never slows the writer or the other readers. An idle
//! mailbox allocates nothing for its queue (a broadcast channel allocates all its slots up
//! front: 64 KiB for 1,024); during a burst a reader that is behind holds up to
//! `SUBSCRIBER_BUFFER` items, given back once it has caught up.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::task::AtomicWaker;

use super::SUBSCRIBER_BUFFER;

/// One reader's queue. It has one reader, so a bare waker does (smaller than a `Notify`, and
/// its `recv` future holds nothing but a reference: an idle subscriber's memory matters).
pub struct Mailbox<T> {
    queue: Mutex<Queue<T>>,
    reader: AtomicWaker,
}

struct Queue<T> {
    items: VecDeque<T>,
    /// Items dropped since the reader last looked.
    missed: u64,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self { queue: Mutex::new(Queue { items: VecDeque::new(), missed: 0 }), reader: AtomicWaker::new() }
    }
}

/// What `recv` brings.
#[derive(Debug)]
pub enum Taken<T> {
    /// The next item.
    Item(T),
    /// This many items were dropped because the reader fell `SUBSCRIBER_BUFFER` behind; the
    /// ones after them follow.
    Missed(u64),
}

impl<T> Mailbox<T> {
    /// Queues `item` (dropping the oldest when full) and wakes the reader.
    pub fn push(&self, item: T) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.items.len() >= SUBSCRIBER_BUFFER {
                queue.items.pop_front();
                queue.missed += 1;
            }
            queue.items.push_back(item);
        }
        self.reader.wake();
    }

    pub(crate) fn take(&self) -> Option<Taken<T>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.missed > 0 {
            return Some(Taken::Missed(std::mem::take(&mut queue.missed)));
        }
        let next = queue.items.pop_front().map(Taken::Item);
        if queue.items.is_empty() && queue.items.capacity() > 16 {
            // A burst is over: an idle reader goes back to costing nothing for its queue.
            queue.items = VecDeque::new();
        }
        next
    }

    /// The next item (or how many were missed). Cancel-safe: an item stays queued until a
    /// `recv` returns it. One reader only.
    pub async fn recv(&self) -> Taken<T> {
        std::future::poll_fn(|cx| {
            if let Some(next) = self.take() {
                return std::task::Poll::Ready(next);
            }
            // Registered before looking again, so an item pushed in between wakes this task.
            self.reader.register(cx.waker());
            match self.take() {
                Some(next) => std::task::Poll::Ready(next),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }
}
