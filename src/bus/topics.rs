//! Fan-out by topic: this process's subscriptions, indexed by what they listen to.
//!
//! Each subscription has a mailbox, registered under its feed's topics (`Feed::topics`). The
//! relay hands every delivered event to `Router::route`, which puts it in the mailboxes
//! registered under the event's topics (`Event::topics`) and wakes those subscribers only. A
//! cart change wakes the cart's owner, not every subscriber in the process; an event nobody
//! listens to wakes nobody. (With one broadcast channel for all, every subscriber woke for
//! every event and threw most of them away.) Visibility is still checked on each event the
//! mailbox brings (`Feed::accepts`): the index decides who is woken, not who may see.
//!
//! A mailbox (`bus::mailbox`) holds at most `SUBSCRIBER_BUFFER` events; a subscriber that
//! falls behind loses the oldest and is told how many, and never slows the others or the
//! publisher. During a burst each subscriber that is behind holds up to `SUBSCRIBER_BUFFER`
//! pointers (8 KiB; 80 MiB for 10,000 subscribers all behind), given back once it has caught up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::Recorded;
use super::mailbox::Taken;
use crate::domain::event::Topic;

/// The subscriptions of this process, by topic.
#[derive(Default)]
pub struct Router {
    topics: RwLock<HashMap<Topic, HashMap<u64, Arc<Mailbox>>>>,
    next_id: AtomicU64,
    subscriptions: AtomicU64,
    /// Events put in a mailbox, over the process's life (what routing saves is visible here).
    routed: AtomicU64,
}

type Mailbox = super::mailbox::Mailbox<Arc<Recorded>>;

/// What a subscription's `recv` brings.
#[derive(Debug)]
pub enum Received {
    /// The next event on the subscription's topics.
    Event(Arc<Recorded>),
    /// This many events were dropped because the subscriber fell `SUBSCRIBER_BUFFER` behind;
    /// the ones after them follow.
    Missed(u64),
}

/// One subscriber's place in the router; it leaves the index when dropped.
pub struct Subscription {
    router: Arc<Router>,
    id: u64,
    topics: Box<[Topic]>,
    mailbox: Arc<Mailbox>,
}

impl Router {
    /// Registers a subscriber under `topics` (none: it never hears anything).
    pub fn subscribe(self: &Arc<Self>, topics: Vec<Topic>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox: Arc<Mailbox> = Arc::default();
        {
            let mut index = self.topics.write().unwrap_or_else(|e| e.into_inner());
            for topic in &topics {
                index.entry(*topic).or_default().insert(id, mailbox.clone());
            }
        }
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        Subscription { router: self.clone(), id, topics: topics.into_boxed_slice(), mailbox }
    }

    /// Puts `r` in the mailbox of every subscriber of its topics and wakes them; how many.
    pub fn route(&self, r: &Arc<Recorded>) -> usize {
        let index = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut reached = 0;
        for topic in r.event.topics() {
            for mailbox in index.get(&topic).into_iter().flat_map(HashMap::values) {
                mailbox.push(r.clone());
                reached += 1;
            }
        }
        self.routed.fetch_add(reached as u64, Ordering::Relaxed);
        reached
    }

    /// Subscriptions registered now.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed) as usize
    }

    /// Events put in a mailbox so far.
    pub fn routed(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }
}

impl Subscription {
    /// The next event on this subscription's topics (or how many were missed). Cancel-safe:
    /// an event stays in the mailbox until a `recv` returns it.
    pub async fn recv(&mut self) -> Received {
        match self.mailbox.recv().await {
            Taken::Item(r) => Received::Event(r),
            Taken::Missed(n) => Received::Missed(n),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut index = self.router.topics.write().unwrap_or_else(|e| e.into_inner());
        for topic in self.topics.iter() {
            if let Some(mailboxes) = index.get_mut(topic) {
                mailboxes.remove(&self.id);
                if mailboxes.is_empty() {
                    index.remove(topic);
                }
            }
        }
        self.router.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Event, SUBSCRIBER_BUFFER};

    fn cart(seq: i64, customer_id: i64) -> Arc<Recorded> {
        Arc::new(Recorded { seq, version: seq, event: Event::Cart { customer_id, at: chrono::Utc::now() } })
    }

    fn seqs(sub: &mut Subscription) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(Taken::Item(r)) = sub.mailbox.take() {
            out.push(r.seq);
        }
        out
    }

    #[test]
    fn an_event_reaches_the_subscribers_of_its_topics_only() {
        let router = Arc::new(Router::default());
        let mut mine = router.subscribe(vec![Topic::Cart(1)]);
        let mut theirs = router.subscribe(vec![Topic::Cart(2)]);
        let mut every_cart = router.subscribe(vec![Topic::Kind("cart")]);
        let mut stock = router.subscribe(vec![Topic::Kind("inventory")]);
        assert_eq!(router.route(&cart(1, 1)), 2);
        assert_eq!(router.route(&cart(2, 1)), 2);
        assert_eq!((seqs(&mut mine), seqs(&mut theirs)), (vec![1, 2], vec![]));
        assert_eq!((seqs(&mut every_cart), seqs(&mut stock)), (vec![1, 2], vec![]));
        assert_eq!(router.routed(), 4);
    }

    #[test]
    fn a_dropped_subscription_leaves_the_index() {
        let router = Arc::new(Router::default());
        let sub = router.subscribe(vec![Topic::Cart(1), Topic::Stock(7)]);
        assert_eq!(router.subscriptions(), 1);
        drop(sub);
        assert_eq!(router.subscriptions(), 0);
        assert!(router.topics.read().unwrap().is_empty(), "no empty topic is kept");
        assert_eq!(router.route(&cart(1, 1)), 0);
    }

    #[tokio::test]
    async fn a_full_mailbox_drops_the_oldest_and_says_how_many() {
        let router = Arc::new(Router::default());
        let mut sub = router.subscribe(vec![Topic::Cart(1)]);
        let extra = 5;
        for seq in 1..=(SUBSCRIBER_BUFFER as i64 + extra) {
            router.route(&cart(seq, 1));
        }
        assert!(matches!(sub.recv().await, Received::Missed(n) if n == extra as u64));
        match sub.recv().await {
            Received::Event(r) => assert_eq!(r.seq, extra + 1, "the oldest kept follows"),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn recv_waits_for_the_next_event() {
        let router = Arc::new(Router::default());
        let mut sub = router.subscribe(vec![Topic::Cart(1)]);
        let waiting = tokio::spawn(async move {
            match sub.recv().await {
                Received::Event(r) => r.seq,
                Received::Missed(_) => -1,
            }
        });
        tokio::task::yield_now().await;
        router.route(&cart(9, 1));
        assert_eq!(waiting.await.unwrap(), 9);
    }
}
