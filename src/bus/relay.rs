//! Exactly-once, newest-wins delivery into this process: the one place every event comes in,
//! whichever way it came (this process's commits, Redis, the outbox sweep).
//!
//! - **Once**: an outbox event is delivered once per process, by its outbox id, whichever path
//!   brings it first. `cursor` is the id up to which every event was delivered or given up on;
//!   ids above it that were delivered are kept until the cursor passes them.
//! - **In order per entity**: versions of an entity are delivered 1, 2, 3... An event whose
//!   version skips one (Redis brought version 27 while 26 is still on its way through the sweep)
//!   is held, and the sweep is woken to fill the gap from the outbox at once; the held event
//!   follows the one it waited for. A gap not filled within `HOLD_MAX` (the outbox pruned, the
//!   database unreachable) is given up: the held event is delivered, and since every event
//!   carries its entity's state, the subscriber is current all the same; its version jump tells
//!   it changes were skipped. An event older than one delivered is dropped, never delivered late.
//! - **Gaps**: an id the sweep has not seen while later ones exist is a transaction still open
//!   or rolled back (PostgreSQL burns sequence ids on rollback). The cursor waits `GAP_GRACE` for
//!   it, then moves on; later events are delivered meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

use super::Recorded;
use super::topics::Router;

/// How long an outbox id may stay missing below delivered ones before the cursor skips it: a
/// transaction that wrote an event commits within this, or is rolled back.
pub const GAP_GRACE: Duration = Duration::from_secs(10);

/// Delivered ids kept above the cursor before a gap is given up at once (memory bound).
const ABOVE_CAP: usize = 100_000;

/// Events held for gaps before the oldest are released at once (memory bound).
const HELD_CAP: usize = 10_000;

/// How long an event waits for the versions before it (see the module's notes).
pub const HOLD_MAX: Duration = Duration::from_secs(3);

/// Entities whose latest version is remembered; beyond this the memory is reset (after which an
/// event arriving late could be delivered after a newer one, and the next event corrects it).
const LATEST_CAP: usize = 200_000;

#[derive(Debug, Default)]
struct Ledger {
    cursor: i64,
    above: BTreeSet<i64>,
    /// The missing id the cursor waits for, and since when.
    gap: Option<(i64, Instant)>,
    latest: HashMap<String, i64>,
    /// Events waiting for an earlier version of their entity, by entity and version.
    held: HashMap<String, BTreeMap<i64, (Arc<Recorded>, Instant)>>,
}

/// What to do with an event.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Deliver it (and then whatever it released).
    Deliver,
    /// Seen before, or older than one delivered.
    Drop,
    /// Hold it until the versions before it arrive (or `HOLD_MAX`).
    Hold,
}

impl Ledger {
    /// What to do with `r` (and notes that it was seen).
    fn admit(&mut self, r: &Recorded) -> Verdict {
        if r.seq == 0 {
            return Verdict::Deliver;
        }
        if r.seq <= self.cursor || !self.above.insert(r.seq) {
            return Verdict::Drop;
        }
        match self.latest.get(&r.event.entity()) {
            Some(v) if *v >= r.version => Verdict::Drop,
            Some(v) if *v + 1 < r.version => Verdict::Hold,
            _ => Verdict::Deliver,
        }
    }

    /// Notes that `r` is delivered; the held events of its entity it releases, in order.
    fn delivered(&mut self, r: &Recorded, out: &mut Vec<Arc<Recorded>>) {
        if r.seq == 0 {
            return;
        }
        let entity = r.event.entity();
        let mut version = r.version;
        if let Some(held) = self.held.get_mut(&entity) {
            while let Some(entry) = held.first_entry() {
                if *entry.key() > version + 1 {
                    break;
                }
                let (next, _) = entry.remove();
                if next.version > version {
                    version = next.version;
                    out.push(next);
                }
            }
            if held.is_empty() {
                self.held.remove(&entity);
            }
        }
        if self.latest.len() >= LATEST_CAP && !self.latest.contains_key(&entity) {
            self.latest.clear();
        }
        self.latest.insert(entity, version);
    }

    /// Held events that waited `hold` or longer (all, when too many are held), given up on:
    /// the first of each entity's.
    fn overdue(&mut self, now: Instant, hold: Duration) -> Vec<Arc<Recorded>> {
        let crowded = self.held.values().map(BTreeMap::len).sum::<usize>() >= HELD_CAP;
        let mut due = Vec::new();
        for held in self.held.values_mut() {
            if let Some(entry) = held.first_entry()
                && (crowded || now.duration_since(entry.get().1) >= hold)
            {
                due.push(entry.remove().0);
            }
        }
        self.held.retain(|_, h| !h.is_empty());
        due
    }

    /// Moves the cursor over delivered ids, and over gaps older than `grace`.
    fn advance(&mut self, now: Instant, grace: Duration) {
        loop {
            while self.above.first() == Some(&(self.cursor + 1)) {
                self.above.pop_first();
                self.cursor += 1;
            }
            let Some(&next) = self.above.first() else {
                self.gap = None;
                return;
            };
            let missing = self.cursor + 1;
            // Too much waiting behind one gap: give it up now rather than grow without bound.
            let crowded = self.above.len() >= ABOVE_CAP;
            match self.gap {
                Some((id, since)) if id == missing && (crowded || now.duration_since(since) >= grace) => {
                    tracing::debug!(from = missing, to = next - 1, "outbox ids never committed; moving on");
                    self.cursor = next - 1;
                    self.gap = None;
                }
                // Still waiting for the same id.
                Some((id, _)) if id == missing => return,
                // A new gap (the one before was filled): its own clock.
                _ => {
                    self.gap = Some((missing, now));
                    if !crowded {
                        return;
                    }
                }
            }
        }
    }
}

/// Delivers events to this process's subscribers, once each and in order per entity.
pub struct Delivery {
    local: broadcast::Sender<Arc<Recorded>>,
    /// The subscriptions, by topic: each delivered event wakes only those of its topics.
    router: Arc<Router>,
    ledger: Mutex<Ledger>,
    /// Woken when an event is held for a gap: the sweep reads the outbox at once.
    gap: Notify,
}

impl Delivery {
    /// Delivery into `local` (the process's listeners of every event: the cache) and `router`
    /// (subscriptions, by topic).
    pub fn new(local: broadcast::Sender<Arc<Recorded>>, router: Arc<Router>) -> Arc<Self> {
        Arc::new(Self { local, router, ledger: Mutex::new(Ledger::default()), gap: Notify::new() })
    }

    /// Delivers `r` (and what it releases) unless it was seen before or is older than one
    /// delivered; holds it while an earlier version of its entity is missing. Whether it was
    /// delivered now.
    pub fn deliver(&self, r: Arc<Recorded>) -> bool {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        match ledger.admit(&r) {
            Verdict::Drop => false,
            Verdict::Hold => {
                ledger.held.entry(r.event.entity()).or_default().insert(r.version, (r, Instant::now()));
                self.gap.notify_one();
                false
            }
            Verdict::Deliver => {
                // Sent under the lock, so the channel's order is the ledger's.
                self.release(&mut ledger, r);
                true
            }
        }
    }

    fn release(&self, ledger: &mut Ledger, r: Arc<Recorded>) {
        let mut out = vec![r];
        let mut i = 0;
        while i < out.len() {
            let r = out[i].clone();
            ledger.delivered(&r, &mut out);
            // From the change to this replica's subscribers, once per event per replica.
            let lag = (chrono::Utc::now() - r.event.at()).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            metrics::histogram!(crate::telemetry::metrics::EVENT_LAG, "type" => r.event.kind()).record(lag);
            self.router.route(&r);
            // No local listener is not an error.
            let _ = self.local.send(r);
            i += 1;
        }
    }

    /// Resolves when an event waits for a gap to be filled (the sweep listens).
    pub async fn gap(&self) {
        self.gap.notified().await
    }

    /// The id after which the sweep reads.
    pub fn cursor(&self) -> i64 {
        self.ledger.lock().expect("ledger lock").cursor
    }

    /// Starts delivering from the outbox after `seq` (a new process does not replay history).
    pub fn start_after(&self, seq: i64) {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        if seq > ledger.cursor {
            ledger.cursor = seq;
            ledger.above.retain(|s| *s > seq);
        }
    }

    /// Notes outbox ids that will never be delivered here (rows this build cannot read), so the
    /// cursor passes them.
    pub fn skip(&self, seqs: &[i64]) {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        for seq in seqs {
            if *seq > ledger.cursor {
                ledger.above.insert(*seq);
            }
        }
    }

    /// On every sweep tick, whether the outbox could be read or not: moves the cursor on, and
    /// delivers events held longer than `HOLD_MAX`.
    pub fn advance(&self) {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let now = Instant::now();
        ledger.advance(now, GAP_GRACE);
        for r in ledger.overdue(now, HOLD_MAX) {
            tracing::warn!(entity = %r.event.entity(), version = r.version, "an event's earlier versions never came; delivering it");
            self.release(&mut ledger, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Event;

    fn stock(seq: i64, product_id: i64, version: i64) -> Recorded {
        let event = Event::Inventory { product_id, vendor_id: 1, available: version, delta: 1, at: chrono::Utc::now() };
        Recorded { seq, version, event }
    }

    /// The versions of product 7's stock a subscriber receives, in order.
    fn received(rx: &mut broadcast::Receiver<Arc<Recorded>>) -> Vec<i64> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|r| r.version).collect()
    }

    #[test]
    fn each_event_is_delivered_once_and_in_version_order() {
        let (tx, mut rx) = broadcast::channel(16);
        let delivery = Delivery::new(tx, Default::default());
        assert!(delivery.deliver(Arc::new(stock(1, 7, 1))));
        assert!(!delivery.deliver(Arc::new(stock(1, 7, 1))), "a duplicate");
        assert!(!delivery.deliver(Arc::new(stock(4, 7, 3))), "version 2 is missing: held");
        assert_eq!(received(&mut rx), [1]);
        assert!(delivery.deliver(Arc::new(stock(3, 7, 2))), "the gap is filled...");
        assert_eq!(received(&mut rx), [2, 3], "...and the held one follows");
        assert!(!delivery.deliver(Arc::new(stock(2, 7, 2))), "older than one delivered");
        assert!(delivery.deliver(Arc::new(stock(5, 8, 4))), "another entity, first seen");
        assert!(delivery.deliver(Arc::new(Recorded::unrecorded(stock(0, 7, 0).event))), "outside the outbox");
    }

    #[test]
    fn a_gap_never_filled_is_given_up_after_the_hold() {
        let mut ledger = Ledger::default();
        let t0 = Instant::now();
        assert_eq!(ledger.admit(&stock(1, 7, 1)), Verdict::Deliver);
        ledger.delivered(&stock(1, 7, 1), &mut Vec::new());
        assert_eq!(ledger.admit(&stock(3, 7, 3)), Verdict::Hold);
        ledger.held.entry("stock:7".into()).or_default().insert(3, (Arc::new(stock(3, 7, 3)), t0));
        assert!(ledger.overdue(t0 + HOLD_MAX / 2, HOLD_MAX).is_empty());
        let due = ledger.overdue(t0 + HOLD_MAX, HOLD_MAX);
        assert_eq!(due.iter().map(|r| r.version).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn the_cursor_follows_delivered_ids_and_skips_a_gap_after_the_grace() {
        let mut ledger = Ledger::default();
        let t0 = Instant::now();
        for seq in [1, 2, 4, 5] {
            assert_eq!(ledger.admit(&stock(seq, seq, 1)), Verdict::Deliver);
        }
        ledger.advance(t0, GAP_GRACE);
        assert_eq!(ledger.cursor, 2, "stops at the missing 3");
        ledger.advance(t0 + GAP_GRACE / 2, GAP_GRACE);
        assert_eq!(ledger.cursor, 2, "still waiting for 3");
        // 3 commits late, while 7 is already there and 6 is not: the cursor stops at 5, and the
        // wait for 6 starts now, not when the wait for 3 did.
        assert_eq!(ledger.admit(&stock(7, 7, 1)), Verdict::Deliver);
        assert_eq!(ledger.admit(&stock(3, 3, 1)), Verdict::Deliver, "3 committed late and is delivered");
        ledger.advance(t0 + GAP_GRACE - Duration::from_millis(1), GAP_GRACE);
        assert_eq!(ledger.cursor, 5);
        ledger.advance(t0 + GAP_GRACE, GAP_GRACE);
        assert_eq!(ledger.cursor, 5, "6 is waited for afresh");
        assert_eq!(ledger.admit(&stock(6, 6, 1)), Verdict::Deliver, "and delivered when it commits");
        ledger.advance(t0 + GAP_GRACE, GAP_GRACE);
        assert_eq!((ledger.cursor, ledger.above.len()), (7, 0));
        let t1 = t0 + GAP_GRACE;
        ledger.admit(&stock(9, 9, 1));
        ledger.advance(t1, GAP_GRACE);
        assert_eq!(ledger.cursor, 7);
        ledger.advance(t1 + GAP_GRACE, GAP_GRACE);
        assert_eq!(ledger.cursor, 9, "8 never came: skipped after the grace");
        assert_eq!(ledger.admit(&stock(8, 8, 1)), Verdict::Drop, "and not delivered below the cursor");
    }
}
