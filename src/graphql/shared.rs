//! Subscriptions executed once per distinct selection and caller, each result serialised once
//! for all their subscribers.
//!
//! Two subscriptions with the same document, operation name, variables and extensions, opened
//! by the same caller (the same identity, roles, vendor and token expiry, or both anonymous),
//! see exactly the same results: the same feed, the same visibility, the same fields, the same
//! token deadline. So they form a **group**: the first runs through the gate and the engine as
//! any operation does, in a task of the group's own, and each of its results is serialised once
//! into shared JSON. Every subscriber of the group passes admission for itself (limits, cost,
//! its own budget: `Limits::admit_alone`) and then only copies those bytes into its own
//! message. 10,000 storefront tabs watching stock cost one execution and one serialisation per
//! event, not 10,000, and an idle subscriber holds a receiver instead of an engine stream.
//!
//! Differences from a subscription of its own, by design:
//! - `extensions.cost` of a shared result has `requestedQueryCost` and `actualQueryCost` but no
//!   `throttleStatus` (that is the subscriber's own bucket, not the group's); the unused cost is
//!   given back to each subscriber's budget with its first result, as for any operation.
//! - A subscriber that falls more than `bus::SUBSCRIBER_BUFFER` results behind its group (its
//!   client reads too slowly) is told with `EVENTS_MISSED` and the number missed, then sent the
//!   current state of what it watches, executed for it alone (`Replay`); results it still holds
//!   that are older than that state are skipped (`Stamp`), as on a subscription of its own. The
//!   group and its other subscribers go on.
//! - Group membership is by caller, not by role: subscribers with different identities never
//!   share a result, whatever their subscription.
//!
//! Each subscriber has its own mailbox (`bus::mailbox`), which allocates nothing while idle, so
//! a subscription that shares with nobody costs little more than one with an execution of its
//! own. When the last subscriber of a group leaves, the group's task is stopped and its bus
//! subscription dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Request, Response};
use futures::StreamExt;

use super::limits::gate::{Ticket, is_request_error};
use crate::auth::Caller;
use crate::bus::EventBus;
use crate::bus::mailbox::{Mailbox, Taken};

/// A result for one subscriber.
pub enum Outcome {
    /// Executed for this subscriber alone. Boxed: every stream that yields an outcome keeps
    /// room for one in its state while idle, and a `Response` inline is several hundred bytes
    /// per subscriber; an own result costs one allocation more, beside its execution.
    Own(Box<Response>),
    /// Executed and serialised once for its whole group.
    Shared(Arc<SharedResult>),
}

/// One result of a group, serialised once.
pub struct SharedResult {
    /// The JSON of the response (`{"data":...}`), or of its errors when `refused`.
    pub json: Box<str>,
    /// Refused before execution (it did not validate): `json` is the errors, which the
    /// transport sends as the protocol's `error` message.
    pub refused: bool,
    /// Its actual cost, for each subscriber's refund.
    actual: u64,
    /// The entity and version of the event it shows (see `Stamp`).
    stamp: Option<(String, i64)>,
}

/// Asks a subscription for the current state of what it watches, after `missed` results were
/// lost: in a request's data, its stream yields an `EVENTS_MISSED` error with the number, then
/// the current state (where the feed is bounded), then ends (`graphql::subscriptions`).
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// How many results the subscriber missed.
    pub missed: u64,
}

/// In a request's data: the subscription's stream writes here the entity and version of the
/// event behind each item it yields (`Recorded::entity`, `Recorded::version`), so results
/// serialised without them can still be ordered against a replayed current state.
#[derive(Debug, Clone, Default)]
pub struct Stamp(Arc<Mutex<Option<(String, i64)>>>);

impl Stamp {
    /// Marks the next item as showing `entity` at `version`.
    pub fn set(&self, entity: String, version: i64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((entity, version));
    }

    fn take(&self) -> Option<(String, i64)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How many subscribers a group's results reach now: in the group's request data, so its
/// stream counts each event delivered once per subscriber (`events_delivered_total`).
#[derive(Debug, Clone, Default)]
pub struct Audience(Arc<AtomicUsize>);

impl Audience {
    /// The subscribers now (at least one: the stream runs for someone).
    pub fn size(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(1) as u64
    }
}

/// What makes two subscriptions see the same results. Boxed strings: a group holds its
/// selection for its whole life, and `serde_json::to_string` leaves 128 bytes of capacity
/// behind even for `{}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selection {
    query: Box<str>,
    operation: Option<Box<str>>,
    variables: Box<str>,
    extensions: Box<str>,
    caller: Box<str>,
}

impl Selection {
    /// The selection of `request` opened by `caller`.
    pub fn of(request: &Request, caller: &Caller) -> Self {
        let caller = match caller {
            Caller::Authenticated(i) => {
                format!("{}\u{0}{:?}\u{0}{:?}\u{0}{}", i.subject, i.roles, i.vendor_id, i.expires_at)
            }
            Caller::Anonymous => String::new(),
            // Never shared with an identity: a refused token does not open a WebSocket session.
            Caller::Rejected(reason) => format!("rejected\u{0}{reason}"),
        };
        Self {
            query: request.query.as_str().into(),
            operation: request.operation_name.as_deref().map(Into::into),
            variables: serde_json::to_string(&request.variables).unwrap_or_default().into_boxed_str(),
            extensions: serde_json::to_string(&request.extensions).unwrap_or_default().into_boxed_str(),
            caller: caller.into_boxed_str(),
        }
    }
}

enum Message {
    Result(Arc<SharedResult>),
    End,
}

/// A group's subscribers, each with its mailbox.
#[derive(Default)]
struct Fanout {
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    mailboxes: HashMap<u64, Arc<Mailbox<Message>>>,
    next: u64,
    /// The group's stream ended (`End` was sent): nobody joins any more.
    ended: bool,
}

impl Fanout {
    /// A new member's id and mailbox; `None` once the group has ended.
    fn add(&self) -> Option<(u64, Arc<Mailbox<Message>>)> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if members.ended {
            return None;
        }
        members.next += 1;
        let (id, mailbox) = (members.next, Arc::<Mailbox<Message>>::default());
        members.mailboxes.insert(id, mailbox.clone());
        Some((id, mailbox))
    }

    fn send(&self, result: Arc<SharedResult>) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for mailbox in members.mailboxes.values() {
            mailbox.push(Message::Result(result.clone()));
        }
    }

    /// Ends the group: every member gets `End`, and nobody joins after (under one lock, so a
    /// member either is told or never joins).
    fn end(&self) {
        self.end_with(None);
    }

    /// `end`, with a last result sent under the same lock (a refused document's errors), so
    /// nobody joins between the two and gets the end alone.
    fn end_with(&self, last: Option<Arc<SharedResult>>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if members.ended {
            return;
        }
        members.ended = true;
        if let Some(last) = last {
            for mailbox in members.mailboxes.values() {
                mailbox.push(Message::Result(last.clone()));
            }
        }
        for mailbox in members.mailboxes.values() {
            mailbox.push(Message::End);
        }
    }
}

type Registry = Arc<Mutex<HashMap<Arc<Selection>, Weak<Group>>>>;

/// The groups of a process.
pub struct Groups {
    groups: Registry,
    bus: EventBus,
    serialised: Arc<AtomicU64>,
}

/// A running shared subscription: its task and its subscribers.
struct Group {
    selection: Arc<Selection>,
    fanout: Arc<Fanout>,
    task: tokio::task::AbortHandle,
    audience: Audience,
    groups: Registry,
    bus: EventBus,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        // Only this group's entry: a group that ended may already be replaced by a new one.
        if groups.get(&self.selection).is_some_and(|g| std::ptr::eq(g.as_ptr(), self)) {
            groups.remove(&self.selection);
        }
        self.bus.shared_listeners(1);
    }
}

/// One subscriber of a group.
struct Member {
    group: Arc<Group>,
    id: u64,
    mailbox: Arc<Mailbox<Message>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.group.fanout.members.lock().unwrap_or_else(|e| e.into_inner()).mailboxes.remove(&self.id);
        self.group.audience.0.fetch_sub(1, Ordering::Relaxed);
        self.group.bus.shared_listeners(-1);
    }
}

impl Groups {
    /// No groups yet; `bus` counts their subscribers as listeners (`EventBus::receivers`).
    pub fn new(bus: EventBus) -> Self {
        Self { groups: Arc::default(), bus, serialised: Arc::default() }
    }

    /// Results serialised for groups so far (one per result of a group, whatever its size).
    pub fn serialised(&self) -> u64 {
        self.serialised.load(Ordering::Relaxed)
    }

    /// Running groups.
    pub fn len(&self) -> usize {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|g| g.strong_count() > 0).count()
    }

    /// Whether no group runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A subscriber of `selection`, admitted with `ticket`: joins its running group, or starts
    /// one whose results come from `execute` (the engine's stream for the first subscriber's
    /// request with the group's `Audience` and `Stamp` in its data, not billed: each
    /// subscriber pays through its own ticket). `replay` runs the subscriber's own request with
    /// a `Replay` and a `Stamp` when it falls behind.
    pub fn subscribe(
        &self,
        selection: Selection,
        ticket: Ticket,
        execute: impl FnOnce(Audience, Stamp) -> BoxStream<'static, Response>,
        replay: impl Fn(Replay, Stamp) -> BoxStream<'static, Response> + Send + 'static,
    ) -> BoxStream<'static, Outcome> {
        let member = self.join(selection, execute);
        member_stream(member, ticket, replay)
    }

    fn join(
        &self,
        selection: Selection,
        execute: impl FnOnce(Audience, Stamp) -> BoxStream<'static, Response>,
    ) -> Member {
        // Declared before the lock, so a group dropped here (its last member just left) is
        // dropped after the lock is given back: its `Drop` takes the same lock.
        let running: Option<Arc<Group>>;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        running = groups.get(&selection).and_then(Weak::upgrade);
        self.bus.shared_listeners(1);
        if let Some(group) = &running
            && let Some((id, mailbox)) = group.fanout.add()
        {
            group.audience.0.fetch_add(1, Ordering::Relaxed);
            return Member { group: group.clone(), id, mailbox };
        }
        let fanout = Arc::new(Fanout::default());
        let (id, mailbox) = fanout.add().expect("a new group has not ended");
        let audience = Audience(Arc::new(AtomicUsize::new(1)));
        let stamp = Stamp::default();
        let results = execute(audience.clone(), stamp.clone());
        let task = tokio::spawn(lead(results, stamp, fanout.clone(), self.serialised.clone()));
        // The group stands for its first subscriber's bus subscription, which is counted by
        // the bus itself: -1 here, +1 when the group goes (`EventBus::shared_listeners`).
        self.bus.shared_listeners(-1);
        let selection = Arc::new(selection);
        let group = Arc::new(Group {
            selection: selection.clone(),
            fanout,
            task: task.abort_handle(),
            audience,
            groups: self.groups.clone(),
            bus: self.bus.clone(),
        });
        groups.insert(selection, Arc::downgrade(&group));
        Member { group, id, mailbox }
    }
}

/// Ends the group when its task ends, however it ends (the stream's end, a panic): its
/// members are told, and nobody joins it after.
struct Ending(Arc<Fanout>);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A group's task: runs the engine's stream and sends each result, serialised once.
async fn lead(
    mut results: BoxStream<'static, Response>,
    stamp: Stamp,
    fanout: Arc<Fanout>,
    serialised: Arc<AtomicU64>,
) {
    let _ending = Ending(fanout.clone());
    let mut first = true;
    while let Some(response) = results.next().await {
        let refused = std::mem::take(&mut first) && is_request_error(&response);
        let json = if refused { serde_json::to_string(&response.errors) } else { serde_json::to_string(&response) };
        serialised.fetch_add(1, Ordering::Relaxed);
        let result = SharedResult {
            json: json.unwrap_or_default().into(),
            refused,
            actual: actual_cost(&response),
            stamp: stamp.take().filter(|_| single_root(&response)),
        };
        if refused {
            fanout.end_with(Some(Arc::new(result)));
            break;
        }
        fanout.send(Arc::new(result));
    }
}

/// Whether `response` has one root field: with several, their streams run side by side and
/// share one `Stamp`, so it cannot say which event a result shows (it is then not used).
fn single_root(response: &Response) -> bool {
    matches!(&response.data, async_graphql::Value::Object(fields) if fields.len() == 1)
}

/// The actual cost the gate wrote in `extensions.cost` (0 when absent).
fn actual_cost(response: &Response) -> u64 {
    let Some(async_graphql::Value::Object(cost)) = response.extensions.get("cost") else { return 0 };
    match cost.get("actualQueryCost") {
        Some(async_graphql::Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// A subscriber's results: its group's, its refund with the first, and a replay of the current
/// state for itself when it falls behind (then the older results it holds are skipped).
fn member_stream(
    member: Member,
    ticket: Ticket,
    replay: impl Fn(Replay, Stamp) -> BoxStream<'static, Response> + Send + 'static,
) -> BoxStream<'static, Outcome> {
    let mut ticket = Some(ticket);
    async_stream::stream! {
        // Versions of the current state sent after a lag: older results are not shown after it.
        let mut floor: HashMap<String, i64> = HashMap::new();
        loop {
            match member.mailbox.recv().await {
                Taken::Item(Message::Result(result)) => {
                    if let Some(ticket) = ticket.take() {
                        // A document that did not validate ran nothing and keeps its bill, as
                        // in the gate. Boxed: a budget script's future would otherwise size
                        // every idle subscriber's stream.
                        if !result.refused {
                            Box::pin(ticket.settle(result.actual)).await;
                        }
                    }
                    if let Some((entity, version)) = &result.stamp
                        && floor.get(entity).is_some_and(|v| *v >= *version)
                    {
                        continue;
                    }
                    let refused = result.refused;
                    yield Outcome::Shared(result);
                    if refused {
                        break;
                    }
                }
                Taken::Item(Message::End) => {
                    // Joined as the group ended, before any result: nothing ran for this
                    // subscriber, so it is not charged.
                    if let Some(ticket) = ticket.take() {
                        Box::pin(ticket.settle(0)).await;
                    }
                    break;
                }
                Taken::Missed(missed) => {
                    tracing::debug!(missed, "a slow subscriber fell behind its group");
                    let stamp = Stamp::default();
                    let mut current = replay(Replay { missed }, stamp.clone());
                    while let Some(response) = current.next().await {
                        if let Some((entity, version)) = stamp.take().filter(|_| single_root(&response)) {
                            floor.insert(entity, version);
                        }
                        yield Outcome::Own(Box::new(response));
                    }
                }
            }
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use async_graphql::Value;

    use super::*;
    use crate::budget::Budgets;
    use crate::bus::SUBSCRIBER_BUFFER;
    use crate::config::Settings;
    use crate::graphql::limits::Limits;

    /// An unbilled admission (no billing key in the request).
    async fn ticket(limits: &Arc<Limits>) -> Ticket {
        let mut request = Request::new("subscription { inventoryChanged { available } }");
        limits.admit_alone(&mut request).await.unwrap_or_else(|r| panic!("refused: {:?}", r.errors))
    }

    /// A result of one root field, `x`, worth `n`.
    fn one(n: i64) -> Response {
        let mut fields = async_graphql::indexmap::IndexMap::new();
        fields.insert(async_graphql::Name::new("x"), Value::from(n));
        Response::new(Value::Object(fields))
    }

    fn data(outcome: Option<Outcome>) -> (bool, i64) {
        match outcome.expect("a result") {
            Outcome::Shared(result) => {
                let json: serde_json::Value = serde_json::from_str(&result.json).unwrap();
                (true, json["data"]["x"].as_i64().unwrap())
            }
            Outcome::Own(response) => (false, response.data.into_json().unwrap()["x"].as_i64().unwrap()),
        }
    }

    /// The engine runs once per group; each result is serialised once and reaches every member;
    /// a member that falls more than the buffer behind gets its replay (for itself), then only
    /// the results newer than the state it replayed, while the others miss nothing; the group
    /// goes when its last member does, and the next subscriber starts a new one.
    #[tokio::test]
    async fn a_group_runs_once_and_a_slow_member_catches_up_alone() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let bus = EventBus::in_process();
        let groups = Groups::new(bus.clone());
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let total = 3 * SUBSCRIBER_BUFFER as i64;
        let (results, engine) = futures::channel::mpsc::unbounded::<Response>();
        // The replayed state is of version total - 10: the held results up to it are older.
        let replay = move |r: Replay, stamp: Stamp| {
            stamp.set("p".into(), total - 10);
            futures::stream::once(async move { one(-(r.missed as i64)) }).boxed()
        };
        let heard = Arc::new(Mutex::new(None));
        let given = heard.clone();
        let mut fast = groups.subscribe(
            selection.clone(),
            ticket(&limits).await,
            move |audience, stamp| {
                *given.lock().unwrap() = Some((audience, stamp));
                engine.boxed()
            },
            replay,
        );
        let mut slow = groups.subscribe(
            selection.clone(),
            ticket(&limits).await,
            |_, _| -> BoxStream<'static, Response> { panic!("the group runs already") },
            replay,
        );
        assert_eq!(groups.len(), 1);
        let (audience, stamp) = heard.lock().unwrap().clone().expect("the engine ran once, for the first member");
        assert_eq!(audience.size(), 2, "events count once per member (events_delivered_total)");
        for n in 0..total {
            stamp.set("p".into(), n);
            results.unbounded_send(one(n)).unwrap();
            assert_eq!(data(fast.next().await), (true, n), "the fast member misses nothing");
        }
        assert_eq!(groups.serialised(), total as u64, "one serialisation per result, not per member");
        // The slow member read nothing: told what it missed through its own replay, then the
        // results it still holds that are newer than the replayed state.
        let kept = SUBSCRIBER_BUFFER as i64;
        assert_eq!(data(slow.next().await), (false, -(total - kept)));
        assert_eq!(data(slow.next().await), (true, total - 9));
        // The group ends when its last member goes; the next subscriber starts another.
        drop((fast, slow));
        assert!(groups.is_empty());
        assert_eq!(bus.receivers(), 0, "no listener left");
        let (_results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let _again = groups.subscribe(selection, ticket(&limits).await, move |_, _| engine.boxed(), replay);
        assert_eq!(groups.len(), 1);
    }

    /// When a group's stream ends, its members end too, and a subscriber that comes after
    /// starts a new group rather than joining the finished one.
    #[tokio::test]
    async fn a_finished_group_ends_its_members_and_takes_no_more() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let groups = Groups::new(EventBus::in_process());
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let replay = |_: Replay, _: Stamp| futures::stream::empty().boxed();
        let one = |_, _| futures::stream::once(async { one(1) }).boxed();
        let mut first = groups.subscribe(selection.clone(), ticket(&limits).await, one, replay);
        assert_eq!(data(first.next().await), (true, 1));
        assert!(first.next().await.is_none(), "the member ends with its group");
        let mut second = groups.subscribe(selection, ticket(&limits).await, one, replay);
        assert_eq!(data(second.next().await), (true, 1), "a new group ran");
    }
}
