//! Ingest: core NATS subscriptions (optionally in a queue group, for scale-out) and
//! JetStream pull consumers with batched fetch. Each event is classified into its lane here,
//! from its subject alone, so the worker never waits behind a less critical lane.
//!
//! Core subscriptions are read by the plane's own ingest connection (`ingest_wire`) when the
//! URL allows it, else by async-nats; JetStream pull consumers always use async-nats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ingest_wire::{self, Deliver, Inbox, Subscription};
use super::lanes::{Inbound, LaneSenders, Retry};
use super::metrics::Metrics;
use super::wire::Target;
use super::{InputSpec, PlaneError, Shared};
use crate::pipeline::Classifier;
use crate::plan::Lane;

/// Subjects repeat (one per machine or Odoo model): remember each one's lane, until a
/// reload changes the routes.
struct Lanes {
    shared: Arc<Shared>,
    generation: u64,
    classifier: Classifier,
    cache: hashbrown::HashMap<String, (Lane, bool)>,
}

impl Lanes {
    fn new(shared: &Arc<Shared>) -> Lanes {
        let routing = shared.routing();
        Lanes {
            shared: shared.clone(),
            generation: routing.generation,
            classifier: routing.classifier.clone(),
            cache: hashbrown::HashMap::new(),
        }
    }

    fn of(&mut self, subject: &str) -> (Lane, bool) {
        let routing = self.shared.routing();
        if routing.generation != self.generation {
            self.generation = routing.generation;
            self.classifier = routing.classifier.clone();
            self.cache.clear();
        }
        if let Some(&c) = self.cache.get(subject) {
            return c;
        }
        let c = self.classifier.classify(subject);
        if self.cache.len() >= 65_536 {
            self.cache.clear();
        }
        self.cache.insert(subject.to_owned(), c);
        c
    }
}

/// Where the core inputs may be read by the plane's own connection (`ingest_wire`): the
/// server's address (a plain `nats://` URL), the URL for errors, and the client name.
pub(crate) struct WireTo<'a> {
    pub target: Target,
    pub url: &'a str,
    pub client_name: &'a str,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    client: &async_nats::Client,
    js: &jetstream::Context,
    wire_to: Option<WireTo<'_>>,
    inputs: &[InputSpec],
    senders: &LaneSenders,
    shared: &Arc<Shared>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>, PlaneError> {
    let mut tasks = Vec::new();
    let lanes = || Lanes::new(shared);
    let core: Vec<&InputSpec> = inputs.iter().filter(|i| i.jetstream.is_none()).collect();
    let mut on_wire = false;
    if let (Some(to), false) = (wire_to, core.is_empty()) {
        let subs = core
            .iter()
            .flat_map(|input| {
                input.subjects.iter().map(|subject| Subscription {
                    subject: subject.clone(),
                    queue_group: input.queue_group.clone(),
                })
            })
            .collect();
        let to_lanes = ToLanes {
            senders: senders.clone(),
            lanes: lanes(),
        };
        let connected = ingest_wire::connect(
            to.target,
            to.client_name,
            subs,
            to_lanes,
            ingest_wire::BUFFERED,
            metrics.clone(),
            stop.clone(),
        )
        .await
        .map_err(|detail| PlaneError::Connect {
            url: to.url.to_string(),
            detail: format!("ingest connection: {detail}"),
        })?;
        // None: the server demands TLS, so the inputs stay on async-nats below.
        if let Some((reader, inboxes)) = connected {
            tasks.push(reader);
            for inbox in inboxes {
                tasks.push(tokio::spawn(wire_loop(inbox, senders.clone())));
            }
            on_wire = true;
        }
    }
    for input in inputs {
        let err = |detail: String| PlaneError::Input {
            source_name: input.source.clone(),
            detail,
        };
        match &input.jetstream {
            None if on_wire => {}
            None => {
                for subject in &input.subjects {
                    let sub = match &input.queue_group {
                        Some(q) => client.queue_subscribe(subject.clone(), q.clone()).await,
                        None => client.subscribe(subject.clone()).await,
                    }
                    .map_err(|e| err(format!("subscribe {subject}: {e}")))?;
                    tasks.push(tokio::spawn(core_loop(
                        sub,
                        senders.clone(),
                        lanes(),
                        metrics.clone(),
                        stop.clone(),
                    )));
                }
            }
            Some(j) => {
                let stream = js
                    .get_stream(&j.stream)
                    .await
                    .map_err(|e| err(format!("stream {}: {e}", j.stream)))?;
                let consumer: PullConsumer = stream
                    .get_consumer(&j.durable)
                    .await
                    .map_err(|e| err(format!("consumer {} on {}: {e}", j.durable, j.stream)))?;
                let retry = Arc::new(Retry {
                    max_deliver: j.max_deliver.max(1),
                    backoff_ms: j.backoff_ms.clone(),
                });
                tasks.push(tokio::spawn(pull_loop(
                    consumer,
                    j.batch.max(1),
                    retry,
                    senders.clone(),
                    lanes(),
                    metrics.clone(),
                    stop.clone(),
                )));
            }
        }
    }
    Ok(tasks)
}

/// The ingest connection's messages into their lanes, from its reader's task (which counts
/// them in `received`).
struct ToLanes {
    senders: LaneSenders,
    lanes: Lanes,
}

impl Deliver for ToLanes {
    /// The event and whether it may be shed.
    type Item = (Inbound, bool);

    fn prepare(&mut self, subject: Bytes, payload: Bytes, received: Instant) -> (Inbound, bool) {
        // The server delivers subjects as they were published; NATS clients publish UTF-8.
        let subject = async_nats::Subject::from_utf8(subject.clone()).unwrap_or_else(|_| {
            async_nats::Subject::from(String::from_utf8_lossy(&subject).into_owned())
        });
        let (lane, may_shed) = self.lanes.of(&subject);
        let inbound = Inbound {
            subject,
            payload,
            ack_to: None,
            delivered: 1,
            retry: None,
            lane,
            received,
            reply: None,
        };
        (inbound, may_shed)
    }

    fn try_deliver(&mut self, (msg, may_shed): (Inbound, bool)) -> Option<(Inbound, bool)> {
        self.senders
            .try_send(msg, may_shed)
            .err()
            .map(|msg| (msg, may_shed))
    }
}

/// One subscription of the ingest connection: the messages its reader could not put into a
/// full lane, into the lanes in order, waiting for room. Ends when the connection has
/// stopped and every message it held is queued (or shed).
async fn wire_loop(mut inbox: Inbox<(Inbound, bool)>, senders: LaneSenders) {
    while let Some(batch) = inbox.recv().await {
        for (inbound, may_shed) in batch {
            let sent = senders.send(inbound, may_shed).await;
            inbox.done();
            if !sent {
                return;
            }
        }
    }
}

async fn core_loop(
    mut sub: async_nats::Subscriber,
    senders: LaneSenders,
    mut lanes: Lanes,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut stopping = false;
    loop {
        let next = if stopping {
            // unsubscribed: take what the client already holds for us, briefly
            tokio::time::timeout(Duration::from_millis(100), sub.next())
                .await
                .ok()
                .flatten()
        } else {
            tokio::select! {
                m = sub.next() => m,
                () = stop.cancelled() => {
                    stopping = true;
                    let _ = sub.unsubscribe().await;
                    continue;
                }
            }
        };
        let Some(msg) = next else { break };
        metrics
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (lane, may_shed) = lanes.of(&msg.subject);
        let inbound = Inbound {
            subject: msg.subject,
            payload: msg.payload,
            ack_to: None,
            delivered: 1,
            retry: None,
            lane,
            received: Instant::now(),
            reply: None,
        };
        if !senders.send(inbound, may_shed).await {
            break;
        }
    }
}

/// How long one pull request waits for messages when the stream has none.
const PULL_EXPIRES: Duration = Duration::from_millis(500);

async fn pull_loop(
    consumer: PullConsumer,
    batch: usize,
    retry: Arc<Retry>,
    senders: LaneSenders,
    mut lanes: Lanes,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // One pull request at a time, each finished before the next: when the plane stops, the
    // current batch is queued and processed whole and no request is left open, so no message
    // is left delivered-but-unacked to wait out `ack_wait` (a continuous pull would leave its
    // read-ahead buffer behind). Lanes are bounded, so a slow worker slows the pulls and the
    // backlog stays in the stream.
    while !stop.is_cancelled() {
        let request = consumer
            .batch()
            .max_messages(batch)
            .expires(PULL_EXPIRES)
            .messages();
        let mut messages = tokio::select! {
            r = request => match r {
                Ok(m) => m,
                Err(e) => {
                    metrics.error(format!("pull: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        while let Some(item) = messages.next().await {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    // e.g. the server went away mid-request; the next request retries
                    metrics.error(format!("pull: {e}"));
                    break;
                }
            };
            metrics
                .received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let delivered = msg.info().map_or(1, |i| i.delivered);
            // The ack is a publish to the delivery's reply subject (see `egress::respond`).
            let msg = msg.message;
            let (lane, _) = lanes.of(&msg.subject);
            let inbound = Inbound {
                subject: msg.subject,
                payload: msg.payload,
                ack_to: msg.reply,
                delivered,
                retry: Some(retry.clone()),
                lane,
                received: Instant::now(),
                reply: None,
            };
            if !senders.send(inbound, false).await {
                return;
            }
        }
    }
}
