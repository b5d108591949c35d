//! Subscriptions executed once per distinct selection and caller, each result serialised once
//! for all their subscribers.
//!
//! Two subscriptions with the same document, operation name, variables and extensions, opened
//! by the same caller (the same identity, roles, vendor and token expiry, or both anonymous),
//! see exactly the same results: the same feed, the same visibility, the same fields, the same
//! token deadline. So once there are two they form a **group**: the first one's execution (run
//! through the gate and the engine as any operation is) goes on in a task of the group's own,
//! and each of its results is serialised once into shared JSON. Every subscriber of the group
//! passes admission for itself (limits, cost, its own budget: `Limits::admit_alone`) and then
//! only copies those bytes into its own message. 10,000 storefront tabs watching stock cost one
//! execution and one serialisation per event, not 10,000, and an idle member holds a mailbox
//! instead of an engine stream.
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
//! Each member has its own mailbox (`bus::mailbox`), which allocates nothing while idle. When
//! the last member of a group leaves, the group's task is stopped and its bus subscription
//! dropped.
//!
//! **A subscription nobody shares runs alone** (`Solo`): its execution is polled in its
//! subscriber's own stream, with no task, fan-out list or mailbox, and its results go out as
//! they come (`Outcome::Own`; a lag is handled by the execution itself, as in
//! `graphql::subscriptions`). It keeps its replay, for the day it becomes a member. Most subscriptions are of this kind (a customer's cart or
//! orders, one product's stock), and the group's parts were about 1 KiB of an idle one
//! (bench/SUBSCRIBERS.md). The second subscriber of the same selection and caller moves that
//! execution, as it stands, into a group's task, and both become its members (`Groups::join`):
//! a selection still runs once however many watch it. While it runs alone, the subscriber's
//! stream holds the execution's lock as it polls it; the second subscriber waits out that poll
//! (without the registry's lock, so no other subscriber waits). A panic in a lone execution
//! ends that subscription only, as it ends a group's task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Request, Response};
use futures::StreamExt;

use futures::task::AtomicWaker;

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

/// How many subscribers an execution's results reach now (1 alone, a group's members): in its
/// request data, so its stream counts each event delivered once per subscriber
/// (`events_delivered_total`).
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
    query: Arc<str>,
    operation: Option<Box<str>>,
    variables: Box<str>,
    extensions: Box<str>,
    caller: Box<str>,
}

impl Selection {
    /// The document's text, by pointer (the subscriber's request is made again from it for its
    /// execution and replays).
    pub fn query(&self) -> Arc<str> {
        self.query.clone()
    }

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

type Registry = Arc<Mutex<HashMap<Arc<Selection>, Entry>>>;

/// Who runs a selection now.
enum Entry {
    /// Its only subscriber, in its own stream.
    Solo(Weak<Solo>),
    /// A group's task, for its members.
    Group(Weak<Group>),
}

impl Entry {
    fn running(&self) -> bool {
        match self {
            Entry::Solo(solo) => solo.strong_count() > 0,
            Entry::Group(group) => group.strong_count() > 0,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

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
        let mut groups = lock(&self.groups);
        // Only this group's entry: a group that ended may already be replaced by a new one.
        if matches!(groups.get(&self.selection), Some(Entry::Group(g)) if std::ptr::eq(g.as_ptr(), self)) {
            groups.remove(&self.selection);
        }
        self.bus.shared_listeners(1);
    }
}

/// A selection run by its only subscriber (see the module's doc).
struct Solo {
    state: Mutex<Alone>,
    /// Its execution ended: a new subscriber starts another (read without the state's lock).
    ended: AtomicBool,
    /// The subscriber's task, woken when a second subscriber moves the execution to a group.
    waker: AtomicWaker,
    selection: Arc<Selection>,
    groups: Registry,
}

enum Alone {
    /// Polled by the subscriber's stream. `first`: no result yet (a refused document's errors
    /// come first and end it).
    Running { results: BoxStream<'static, Response>, audience: Audience, stamp: Stamp, first: bool },
    /// Moved to a group: the subscriber's place in it, for its stream to take.
    Joined(Member),
    /// Moved to a group, and its stream took its place there.
    Moved,
    /// Ended or refused: nobody joins it.
    Ended,
}

/// What a lone subscriber's stream gets next.
enum Step {
    /// A result of its own execution, and whether it is a refusal (the last). Boxed: the
    /// stream holds its step across the refund's await, and a `Response` inline would size
    /// every idle subscriber's stream by a few hundred bytes.
    Result(Box<Response>, bool),
    /// Its execution moved to a group: its results come through this membership from now on.
    Joined(Member),
    End,
}

impl Solo {
    fn poll_step(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Step> {
        use std::task::Poll;
        self.waker.register(cx.waker());
        let mut state = lock(&self.state);
        match &mut *state {
            Alone::Running { results, stamp, first, .. } => {
                // A panic in its execution ends this subscription alone, as it would end a
                // group's task, not the connection's task that polls it.
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| results.poll_next_unpin(cx)));
                match polled {
                    Ok(Poll::Pending) => Poll::Pending,
                    Ok(Poll::Ready(Some(response))) => {
                        // Only a group orders its results against a member's replay.
                        stamp.take();
                        let refused = std::mem::take(first) && is_request_error(&response);
                        if refused {
                            self.end(&mut state);
                        }
                        Poll::Ready(Step::Result(Box::new(response), refused))
                    }
                    Ok(Poll::Ready(None)) => {
                        self.end(&mut state);
                        Poll::Ready(Step::End)
                    }
                    Err(_) => {
                        tracing::error!("a subscription's execution panicked; it ends");
                        self.end(&mut state);
                        Poll::Ready(Step::End)
                    }
                }
            }
            Alone::Joined(_) => match std::mem::replace(&mut *state, Alone::Moved) {
                Alone::Joined(member) => Poll::Ready(Step::Joined(member)),
                _ => unreachable!("matched as joined under the same lock"),
            },
            Alone::Moved | Alone::Ended => Poll::Ready(Step::End),
        }
    }

    fn end(&self, state: &mut Alone) {
        *state = Alone::Ended;
        self.ended.store(true, Ordering::Release);
    }
}

impl Drop for Solo {
    fn drop(&mut self) {
        let mut groups = lock(&self.groups);
        // Only its own entry: once moved to a group, or ended and replaced, the entry is another's.
        if matches!(groups.get(&self.selection), Some(Entry::Solo(s)) if std::ptr::eq(s.as_ptr(), self)) {
            groups.remove(&self.selection);
        }
    }
}

/// How a subscriber takes part: alone, or in a group.
enum Joined {
    Solo(Arc<Solo>),
    Member(Member),
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

    /// Results serialised so far: one per result of an execution, whatever its subscribers
    /// (a group's once for all its members; a lone subscriber's by its transport).
    pub fn serialised(&self) -> u64 {
        self.serialised.load(Ordering::Relaxed)
    }

    /// Running executions: groups, and selections run by their only subscriber.
    pub fn len(&self) -> usize {
        lock(&self.groups).values().filter(|e| e.running()).count()
    }

    /// Whether nothing runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A subscriber of `selection`, admitted with `ticket`: joins its running group, moves the
    /// execution of its lone subscriber into a group with both, or runs alone the results of
    /// `execute` (the engine's stream for the subscriber's request with the execution's
    /// `Audience` and `Stamp` in its data, not billed: each subscriber pays through its own
    /// ticket). `replay` runs the subscriber's own request with a `Replay` and a `Stamp` when,
    /// as a group's member, it falls behind.
    pub fn subscribe(
        &self,
        selection: Selection,
        ticket: Ticket,
        execute: impl FnOnce(Audience, Stamp) -> BoxStream<'static, Response>,
        replay: impl Fn(Replay, Stamp) -> BoxStream<'static, Response> + Send + 'static,
    ) -> BoxStream<'static, Outcome> {
        match self.join(selection, execute) {
            Joined::Member(member) => member_stream(member, Some(ticket), replay),
            Joined::Solo(solo) => solo_stream(solo, ticket, replay, self.serialised.clone()),
        }
    }

    fn join(
        &self,
        selection: Selection,
        execute: impl FnOnce(Audience, Stamp) -> BoxStream<'static, Response>,
    ) -> Joined {
        loop {
            // Declared before the lock, so a group or a solo dropped here (its last subscriber
            // just left) is dropped after the lock is given back: their `Drop` takes the same lock.
            let (group, solo): (Option<Arc<Group>>, Option<Arc<Solo>>);
            let mut groups = lock(&self.groups);
            (group, solo) = match groups.get(&selection) {
                Some(Entry::Group(group)) => (group.upgrade(), None),
                Some(Entry::Solo(solo)) => (None, solo.upgrade().filter(|s| !s.ended.load(Ordering::Acquire))),
                None => (None, None),
            };
            // Listeners (`EventBus::receivers`): the bus counts each execution's own
            // subscription; a group stands for one of its members, so each member beyond that
            // one is added (`EventBus::shared_listeners`; the group gives its one back when it
            // goes).
            if let Some(group) = &group
                && let Some((id, mailbox)) = group.fanout.add()
            {
                self.bus.shared_listeners(1);
                group.audience.0.fetch_add(1, Ordering::Relaxed);
                return Joined::Member(Member { group: group.clone(), id, mailbox });
            }
            if let Some(solo) = &solo {
                // Not under the registry's lock: the lone subscriber holds its execution's lock
                // while it polls it, and no other subscriber of the process should wait on that.
                drop(groups);
                match self.promote(solo) {
                    Some(member) => return Joined::Member(member),
                    // Moved by another subscriber just now, or ended: look again.
                    None => continue,
                }
            }
            let audience = Audience(Arc::new(AtomicUsize::new(1)));
            let stamp = Stamp::default();
            let results = execute(audience.clone(), stamp.clone());
            let selection = Arc::new(selection);
            let solo = Arc::new(Solo {
                state: Mutex::new(Alone::Running { results, audience, stamp, first: true }),
                ended: AtomicBool::new(false),
                waker: AtomicWaker::new(),
                selection: selection.clone(),
                groups: self.groups.clone(),
            });
            groups.insert(selection, Entry::Solo(Arc::downgrade(&solo)));
            return Joined::Solo(solo);
        }
    }

    /// Moves a lone subscriber's execution, as it stands, into a group of the two; the new
    /// subscriber's membership, or `None` when it no longer runs alone. Locks the solo's state,
    /// then the registry (the only place that holds both).
    fn promote(&self, solo: &Solo) -> Option<Member> {
        let mut state = lock(&solo.state);
        if !matches!(*state, Alone::Running { .. }) {
            return None;
        }
        let Alone::Running { results, audience, stamp, first } = std::mem::replace(&mut *state, Alone::Moved) else {
            unreachable!("matched as running under the same lock")
        };
        audience.0.store(2, Ordering::Relaxed);
        let fanout = Arc::new(Fanout::default());
        let (first_id, first_mailbox) = fanout.add().expect("a new group has not ended");
        let (id, mailbox) = fanout.add().expect("a new group has not ended");
        let task = tokio::spawn(lead(results, stamp, fanout.clone(), self.serialised.clone(), first));
        let group = Arc::new(Group {
            selection: solo.selection.clone(),
            fanout,
            task: task.abort_handle(),
            audience,
            groups: self.groups.clone(),
            bus: self.bus.clone(),
        });
        lock(&self.groups).insert(solo.selection.clone(), Entry::Group(Arc::downgrade(&group)));
        *state = Alone::Joined(Member { group: group.clone(), id: first_id, mailbox: first_mailbox });
        drop(state);
        solo.waker.wake();
        self.bus.shared_listeners(1);
        Some(Member { group, id, mailbox })
    }
}

/// A lone subscriber's results: its own execution's, with its refund with the first, until a
/// second subscriber moves that execution to a group; then its membership's.
fn solo_stream(
    solo: Arc<Solo>,
    ticket: Ticket,
    replay: impl Fn(Replay, Stamp) -> BoxStream<'static, Response> + Send + 'static,
    serialised: Arc<AtomicU64>,
) -> BoxStream<'static, Outcome> {
    let mut ticket = Some(ticket);
    async_stream::stream! {
        loop {
            match std::future::poll_fn(|cx| solo.poll_step(cx)).await {
                Step::Result(response, refused) => {
                    // Serialised once, by the transport (one subscriber).
                    serialised.fetch_add(1, Ordering::Relaxed);
                    if let Some(ticket) = ticket.take()
                        && !refused
                    {
                        // Boxed, as in `member_stream`.
                        Box::pin(ticket.settle(actual_cost(&response))).await;
                    }
                    yield Outcome::Own(response);
                    if refused {
                        break;
                    }
                }
                Step::Joined(member) => {
                    let mut results = member_stream(member, ticket.take(), replay);
                    while let Some(outcome) = results.next().await {
                        yield outcome;
                    }
                    break;
                }
                Step::End => {
                    // Ended before any result: nothing ran for it, so it is not charged.
                    if let Some(ticket) = ticket.take() {
                        Box::pin(ticket.settle(0)).await;
                    }
                    break;
                }
            }
        }
    }
    .boxed()
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
    mut first: bool,
) {
    let _ending = Ending(fanout.clone());
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
    mut ticket: Option<Ticket>,
    replay: impl Fn(Replay, Stamp) -> BoxStream<'static, Response> + Send + 'static,
) -> BoxStream<'static, Outcome> {
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

    /// A subscriber alone runs its own execution and gets its results as they come; the second
    /// subscriber of the selection moves that same execution into a group of the two (it is
    /// not run again), whose results both get; the first leaving does not end the second.
    #[tokio::test]
    async fn a_lone_subscriber_runs_alone_until_a_second_one_comes() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let bus = EventBus::in_process();
        let groups = Groups::new(bus.clone());
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let replay = |_: Replay, _: Stamp| futures::stream::empty().boxed();
        let (results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let mut alone = groups.subscribe(selection.clone(), ticket(&limits).await, move |_, _| engine.boxed(), replay);
        results.unbounded_send(one(1)).unwrap();
        assert_eq!(data(alone.next().await), (false, 1), "alone: its own result");
        assert_eq!((groups.len(), groups.serialised()), (1, 1), "one execution, one serialisation");
        assert_eq!(bus.receivers(), 0, "its execution's own bus subscription is its count");
        let mut second = groups.subscribe(
            selection.clone(),
            ticket(&limits).await,
            |_, _| -> BoxStream<'static, Response> { panic!("the execution runs already") },
            replay,
        );
        assert_eq!(groups.len(), 1, "still one execution");
        assert_eq!(bus.receivers(), 1, "two subscribers, the execution's own subscription standing for one");
        results.unbounded_send(one(2)).unwrap();
        assert_eq!(data(alone.next().await), (true, 2), "the same execution, now shared");
        assert_eq!(data(second.next().await), (true, 2));
        assert_eq!(groups.serialised(), 2);
        drop(alone);
        results.unbounded_send(one(3)).unwrap();
        assert_eq!(data(second.next().await), (true, 3), "the first leaving does not end the second");
        drop(second);
        assert!(groups.is_empty());
        assert_eq!(bus.receivers(), 0, "no listener left");
    }

    /// A lone subscriber ends when its execution does, and the next one runs a new execution.
    /// A group's members end with their group, and a subscriber that comes after does not join
    /// the finished group but starts anew.
    #[tokio::test]
    async fn finished_executions_end_their_subscribers_and_take_no_more() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let groups = Groups::new(EventBus::in_process());
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let replay = |_: Replay, _: Stamp| futures::stream::empty().boxed();
        let once_of = |n| move |_, _| futures::stream::once(async move { one(n) }).boxed();
        let mut first = groups.subscribe(selection.clone(), ticket(&limits).await, once_of(1), replay);
        assert_eq!(data(first.next().await), (false, 1));
        assert!(first.next().await.is_none(), "it ends with its execution");
        let mut second = groups.subscribe(selection.clone(), ticket(&limits).await, once_of(2), replay);
        assert_eq!(data(second.next().await), (false, 2), "a new execution ran");
        // Two subscribers before any result: a group, whose end ends both.
        let (results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let selection = Selection::of(&Request::new("subscription { y }"), &Caller::Anonymous);
        let mut a = groups.subscribe(selection.clone(), ticket(&limits).await, move |_, _| engine.boxed(), replay);
        let mut b = groups.subscribe(selection.clone(), ticket(&limits).await, once_of(0), replay);
        results.unbounded_send(one(3)).unwrap();
        drop(results);
        for member in [&mut a, &mut b] {
            assert_eq!(data(member.next().await), (true, 3));
            assert!(member.next().await.is_none(), "the member ends with its group");
        }
        let mut c = groups.subscribe(selection, ticket(&limits).await, once_of(4), replay);
        assert_eq!(data(c.next().await), (false, 4), "a new execution ran, not the finished group");
    }

    /// Many subscribers of one selection arriving at once on several threads: one execution,
    /// every one of them gets each result, and all the counts return to nothing when they go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribers_arriving_at_once_share_one_execution() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let bus = EventBus::in_process();
        let groups = Arc::new(Groups::new(bus.clone()));
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let (results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let engine = Arc::new(Mutex::new(Some(engine)));
        let executed = Arc::new(AtomicUsize::new(0));
        let mut joining = Vec::new();
        for _ in 0..64 {
            let (groups, selection, limits) = (groups.clone(), selection.clone(), limits.clone());
            let (engine, executed) = (engine.clone(), executed.clone());
            joining.push(tokio::spawn(async move {
                let execute = move |_, _| {
                    executed.fetch_add(1, Ordering::SeqCst);
                    engine.lock().unwrap().take().expect("executed once").boxed()
                };
                let replay = |_: Replay, _: Stamp| futures::stream::empty().boxed();
                groups.subscribe(selection, ticket(&limits).await, execute, replay)
            }));
        }
        let mut subscribers = Vec::new();
        for joined in joining {
            subscribers.push(joined.await.unwrap());
        }
        assert_eq!((executed.load(Ordering::SeqCst), groups.len()), (1, 1));
        for n in 1..=3 {
            results.unbounded_send(one(n)).unwrap();
            for subscriber in &mut subscribers {
                let (_, got) =
                    data(tokio::time::timeout(std::time::Duration::from_secs(5), subscriber.next()).await.unwrap());
                assert_eq!(got, n);
            }
        }
        assert_eq!(groups.serialised(), 3, "one serialisation per result");
        assert_eq!(bus.receivers(), 63, "every subscriber once, the execution's own subscription standing for one");
        let leaving: Vec<_> = subscribers.into_iter().map(|s| tokio::spawn(async move { drop(s) })).collect();
        for left in leaving {
            left.await.unwrap();
        }
        assert!(groups.is_empty());
        assert_eq!(bus.receivers(), 0, "no listener left");
    }
}
