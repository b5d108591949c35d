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
//!   current state of what it watches, executed for it alone (`Replay`); the group goes on.
//! - Group membership is by caller, not by role: subscribers with different identities never
//!   share a result, whatever their subscription.
//!
//! When the last subscriber of a group leaves, the group's task is stopped and its bus
//! subscription dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::{Request, Response};
use futures::StreamExt;
use tokio::sync::broadcast;

use super::limits::gate::Ticket;
use crate::auth::Caller;
use crate::bus::{EventBus, SUBSCRIBER_BUFFER};

/// A result for one subscriber.
pub enum Outcome {
    /// Executed for this subscriber alone.
    Own(Response),
    /// Executed and serialised once for its whole group.
    Shared(SharedResult),
}

/// One result of a group, serialised once.
#[derive(Clone)]
pub struct SharedResult {
    /// The JSON of the response (`{"data":...}`), or of its errors when `refused`.
    pub json: Arc<str>,
    /// Refused before execution (it did not validate): `json` is the errors, which the
    /// transport sends as the protocol's `error` message.
    pub refused: bool,
    /// Its actual cost, for each subscriber's refund.
    actual: u64,
}

/// Asks a subscription for the current state of what it watches, after `missed` results were
/// lost: in a request's data, its stream yields an `EVENTS_MISSED` error with the number, then
/// the current state (where the feed is bounded), then ends (`graphql::subscriptions`).
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// How many results the subscriber missed.
    pub missed: u64,
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

/// What makes two subscriptions see the same results.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selection {
    query: String,
    operation: Option<String>,
    variables: String,
    extensions: String,
    caller: String,
}

impl Selection {
    /// The selection of `request` opened by `caller`.
    pub fn of(request: &Request, caller: &Caller) -> Self {
        let caller = match caller {
            Caller::Authenticated(i) => {
                format!("{}\u{0}{:?}\u{0}{:?}\u{0}{}", i.subject, i.roles, i.vendor_id, i.expires_at)
            }
            Caller::Anonymous => String::new(),
            // Never shared: a refused token does not open a WebSocket session, and an HTTP
            // stream with one runs alone.
            Caller::Rejected(reason) => format!("rejected\u{0}{reason}"),
        };
        Self {
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            extensions: serde_json::to_string(&request.extensions).unwrap_or_default(),
            caller,
        }
    }
}

#[derive(Clone)]
enum Message {
    Result(SharedResult),
    End,
}

type Registry = Arc<Mutex<HashMap<Selection, Weak<Group>>>>;

/// The groups of a process.
pub struct Groups {
    groups: Registry,
    bus: EventBus,
    serialised: Arc<AtomicU64>,
}

/// A running shared subscription: its task and the channel of its results.
struct Group {
    selection: Selection,
    results: broadcast::Sender<Message>,
    task: tokio::task::AbortHandle,
    ended: Arc<AtomicBool>,
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
    results: broadcast::Receiver<Message>,
}

impl Drop for Member {
    fn drop(&mut self) {
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
    /// request with the group's `Audience` in its data, not billed: each subscriber pays
    /// through its own ticket). `replay` runs the
    /// subscriber's own request with a `Replay` when it falls behind.
    pub fn subscribe(
        &self,
        selection: Selection,
        ticket: Ticket,
        execute: impl FnOnce(Audience) -> BoxStream<'static, Response>,
        replay: impl Fn(Replay) -> BoxStream<'static, Response> + Send + 'static,
    ) -> BoxStream<'static, Outcome> {
        let member = self.join(selection, execute);
        member_stream(member, ticket, replay)
    }

    fn join(&self, selection: Selection, execute: impl FnOnce(Audience) -> BoxStream<'static, Response>) -> Member {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let running = groups.get(&selection).and_then(Weak::upgrade).filter(|g| !g.ended.load(Ordering::Acquire));
        self.bus.shared_listeners(1);
        if let Some(group) = running {
            group.audience.0.fetch_add(1, Ordering::Relaxed);
            let results = group.results.subscribe();
            return Member { group, results };
        }
        let (sender, results) = broadcast::channel(SUBSCRIBER_BUFFER);
        let ended = Arc::new(AtomicBool::new(false));
        let audience = Audience(Arc::new(AtomicUsize::new(1)));
        let task =
            tokio::spawn(lead(execute(audience.clone()), sender.clone(), ended.clone(), self.serialised.clone()));
        // The group stands for its first subscriber's bus subscription, which is counted by
        // the bus itself: -1 here, +1 when the group goes (`EventBus::shared_listeners`).
        self.bus.shared_listeners(-1);
        let group = Arc::new(Group {
            selection: selection.clone(),
            results: sender,
            task: task.abort_handle(),
            ended,
            audience,
            groups: self.groups.clone(),
            bus: self.bus.clone(),
        });
        groups.insert(selection, Arc::downgrade(&group));
        Member { group, results }
    }
}

/// A group's task: runs the engine's stream and sends each result, serialised once.
async fn lead(
    mut results: BoxStream<'static, Response>,
    sender: broadcast::Sender<Message>,
    ended: Arc<AtomicBool>,
    serialised: Arc<AtomicU64>,
) {
    let mut first = true;
    while let Some(response) = results.next().await {
        let refused = std::mem::take(&mut first) && refused_before_execution(&response);
        let json = if refused { serde_json::to_string(&response.errors) } else { serde_json::to_string(&response) };
        let actual = response
            .extensions
            .get("cost")
            .and_then(|cost| match cost {
                async_graphql::Value::Object(cost) => cost.get("actualQueryCost"),
                _ => None,
            })
            .and_then(|actual| match actual {
                async_graphql::Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(0);
        serialised.fetch_add(1, Ordering::Relaxed);
        let result = SharedResult { json: json.unwrap_or_default().into(), refused, actual };
        // No subscriber left: the group is being dropped, which stops this task.
        let _ = sender.send(Message::Result(result));
        if refused {
            break;
        }
    }
    ended.store(true, Ordering::Release);
    let _ = sender.send(Message::End);
}

/// A subscriber's results: its group's, its refund with the first, and a replay of the current
/// state for itself when it falls behind.
fn member_stream(
    mut member: Member,
    ticket: Ticket,
    replay: impl Fn(Replay) -> BoxStream<'static, Response> + Send + 'static,
) -> BoxStream<'static, Outcome> {
    let mut ticket = Some(ticket);
    async_stream::stream! {
        loop {
            match member.results.recv().await {
                Ok(Message::Result(result)) => {
                    if let Some(ticket) = ticket.take() {
                        // Boxed: a budget script's future would otherwise size every idle
                        // subscriber's stream.
                        Box::pin(ticket.settle(result.actual)).await;
                    }
                    let refused = result.refused;
                    yield Outcome::Shared(result);
                    if refused {
                        break;
                    }
                }
                Ok(Message::End) | Err(broadcast::error::RecvError::Closed) => break,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a slow subscriber fell behind its group");
                    let mut current = replay(Replay { missed });
                    while let Some(response) = current.next().await {
                        yield Outcome::Own(response);
                    }
                }
            }
        }
    }
    .boxed()
}

/// Whether `response` was refused before it ran (parse, validation, limits, budget: no `data`,
/// no error with a `path`), not an `EVENTS_MISSED` notice of a running stream.
pub fn refused_before_execution(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| {
            e.path.is_empty()
                && e.extensions.as_ref().and_then(|x| x.get("code"))
                    != Some(&async_graphql::Value::from("EVENTS_MISSED"))
        })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_graphql::Value;

    use super::*;
    use crate::budget::Budgets;
    use crate::config::Settings;
    use crate::graphql::limits::Limits;

    /// An unbilled admission (no billing key in the request).
    async fn ticket(limits: &Arc<Limits>) -> Ticket {
        let mut request = Request::new("subscription { inventoryChanged { available } }");
        limits.admit_alone(&mut request).await.unwrap_or_else(|r| panic!("refused: {:?}", r.errors))
    }

    fn data(outcome: Option<Outcome>) -> (bool, i64) {
        match outcome.expect("a result") {
            Outcome::Shared(result) => {
                let json: serde_json::Value = serde_json::from_str(&result.json).unwrap();
                (true, json["data"].as_i64().unwrap())
            }
            Outcome::Own(response) => match response.data {
                Value::Number(n) => (false, n.as_i64().unwrap()),
                other => panic!("{other:?}"),
            },
        }
    }

    /// The engine runs once per group; each result is serialised once and reaches every member;
    /// a member that falls more than the buffer behind gets its replay (for itself) and goes on
    /// with the group's oldest results it still holds, while the others miss nothing; the group
    /// goes when its last member does, and the next subscriber starts a new one.
    #[tokio::test]
    async fn a_group_runs_once_and_a_slow_member_catches_up_alone() {
        let limits = Arc::new(Limits::new(Arc::new(Settings::default()), Arc::new(Budgets::local())));
        let bus = EventBus::in_process();
        let groups = Groups::new(bus.clone());
        let selection = Selection::of(&Request::new("subscription { x }"), &Caller::Anonymous);
        let executions = Arc::new(AtomicUsize::new(0));
        let (results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let replay = |r: Replay| futures::stream::once(async move { Response::new(-(r.missed as i64)) }).boxed();
        let (counted, heard) = (executions.clone(), Arc::new(Mutex::new(None)));
        let audience = heard.clone();
        let mut fast = groups.subscribe(
            selection.clone(),
            ticket(&limits).await,
            move |reached| {
                counted.fetch_add(1, Ordering::SeqCst);
                *audience.lock().unwrap() = Some(reached);
                engine.boxed()
            },
            replay,
        );
        let mut slow = groups.subscribe(
            selection.clone(),
            ticket(&limits).await,
            |_| -> BoxStream<'static, Response> { panic!("the group runs already") },
            replay,
        );
        assert_eq!((groups.len(), executions.load(Ordering::SeqCst)), (1, 1));
        let audience = heard.lock().unwrap().clone().expect("the engine got the audience");
        assert_eq!(audience.size(), 2, "events count once per member (events_delivered_total)");
        let total = 3 * SUBSCRIBER_BUFFER as i64;
        for n in 0..total {
            results.unbounded_send(Response::new(n)).unwrap();
            assert_eq!(data(fast.next().await), (true, n), "the fast member misses nothing");
        }
        assert_eq!(groups.serialised(), total as u64, "one serialisation per result, not per member");
        // The slow member read nothing: told what it missed through its own replay, then the
        // oldest results the group still holds for it.
        let kept = SUBSCRIBER_BUFFER as i64;
        assert_eq!(data(slow.next().await), (false, -(total - kept)));
        assert_eq!(data(slow.next().await), (true, total - kept));
        // The group ends when its last member goes; the next subscriber starts another.
        drop((fast, slow));
        assert!(groups.is_empty());
        assert_eq!(bus.receivers(), 0, "no listener left");
        let (_results, engine) = futures::channel::mpsc::unbounded::<Response>();
        let _again = groups.subscribe(selection, ticket(&limits).await, move |_| engine.boxed(), replay);
        assert_eq!(groups.len(), 1);
    }
}
