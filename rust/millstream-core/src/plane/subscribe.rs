//! gRPC `Router.Subscribe` (issue 5): canonical events read back from the JetStream stream
//! that captures the routes' outputs, so a subscriber can start now, at a sequence or a time
//! (replay). Each call has its own ordered consumer, which costs the router nothing when the
//! subscriber is slow: the stream holds the backlog. What is read ahead is bounded (`buffer`
//! batches); a subscriber that leaves that buffer full for `max_stall_ms` cannot keep up
//! and is ended, rather than held open with memory the router would have to keep.
//!
//! Durable cursors are kept by the caller (Python stores the last written sequence and
//! resumes with a start sequence), so this reader never acks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::HeaderMap;
use futures::{FutureExt, StreamExt};
use percent_encoding::percent_decode_str;
use prost::Message;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{PlaneError, Shared};
use crate::proto::{self, cloud_event, cloud_event_attribute_value::Attr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub stream: String,
    /// Server-side filter: the subjects the wanted routes publish to.
    pub filter_subjects: Vec<String>,
    /// CloudEvents types to keep (empty: all).
    #[serde(default)]
    pub types: Vec<String>,
    /// Routes to keep, by `Millstream-Route` header (empty: all).
    #[serde(default)]
    pub routes: Vec<String>,
    pub start: Start,
    pub max_batch: usize,
    pub buffer: usize,
    pub max_stall_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Start {
    Now,
    Beginning,
    Sequence(u64),
    /// Milliseconds since the Unix epoch.
    TimeMs(i64),
}

/// A serialised `SubscribeResponse` and the stream sequence of its last event.
pub type Batch = (Vec<u8>, u64);

/// One subscription's reader, handed to the gRPC call.
pub struct Subscription {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>,
    /// Why the reader stopped early (a slow subscriber, or the stream).
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::AbortHandle,
    runtime: tokio::runtime::Handle,
}

/// Called with the next batch, `Ok(None)` at the end, or why the subscription failed.
pub type Next = Box<dyn FnOnce(Result<Option<Batch>, String>) + Send>;

impl Subscription {
    pub fn next(&self, done: Next) {
        let rx = self.rx.clone();
        let ended = self.ended.clone();
        self.runtime.spawn(async move {
            let why = |e: &Arc<Mutex<Option<String>>>| {
                e.lock().unwrap_or_else(|p| p.into_inner()).clone()
            };
            // A subscriber found too slow is told at once, not after its buffer.
            if let Some(e) = why(&ended) {
                return done(Err(e));
            }
            let batch = rx.lock().await.recv().await;
            match (batch, why(&ended)) {
                (Some(b), _) => done(Ok(Some(b))),
                (None, Some(e)) => done(Err(e)),
                (None, None) => done(Ok(None)),
            }
        });
    }

    pub fn close(&self) {
        self.task.abort();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn start(
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Handle,
    spec: SubscriptionSpec,
) -> Result<Subscription, PlaneError> {
    if spec.filter_subjects.is_empty() {
        return Err(PlaneError::Invalid("no subjects to read".into()));
    }
    if spec.max_batch == 0 || spec.buffer == 0 {
        return Err(PlaneError::Invalid(
            "max_batch and buffer must be at least 1".into(),
        ));
    }
    let deliver_policy = match spec.start {
        Start::Now => DeliverPolicy::New,
        Start::Beginning => DeliverPolicy::All,
        Start::Sequence(s) => DeliverPolicy::ByStartSequence {
            start_sequence: s.max(1),
        },
        Start::TimeMs(ms) => DeliverPolicy::ByStartTime {
            start_time: chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                PlaneError::Invalid(format!("start time {ms} ms is out of range"))
            })?,
        },
    };
    let (tx, rx) = mpsc::channel(spec.buffer);
    let ended = Arc::new(Mutex::new(None));
    let task = runtime.spawn(read(
        shared.clone(),
        spec,
        deliver_policy,
        tx,
        ended.clone(),
    ));
    Ok(Subscription {
        rx: Arc::new(tokio::sync::Mutex::new(rx)),
        ended,
        task: task.abort_handle(),
        runtime: runtime.clone(),
    })
}

async fn read(
    shared: Arc<Shared>,
    spec: SubscriptionSpec,
    deliver_policy: DeliverPolicy,
    tx: mpsc::Sender<Batch>,
    ended: Arc<Mutex<Option<String>>>,
) {
    let end = |why: String| {
        *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    let stream = match shared.js.get_stream(&spec.stream).await {
        Ok(s) => s,
        Err(e) => return end(format!("stream {}: {e}", spec.stream)),
    };
    let config = OrderedConfig {
        filter_subjects: spec.filter_subjects.clone(),
        deliver_policy,
        ..Default::default()
    };
    let mut messages = match stream.create_consumer(config).await {
        Ok(c) => match c.messages().await {
            Ok(m) => m,
            Err(e) => return end(format!("stream {}: {e}", spec.stream)),
        },
        Err(e) => return end(format!("stream {}: {e}", spec.stream)),
    };
    let stall = Duration::from_millis(spec.max_stall_ms);
    let mut events = Vec::with_capacity(spec.max_batch);
    loop {
        // Wait for one event, then take whatever else is already here, up to a batch.
        let mut next = messages.next().await;
        // the position reached, filtered-out events included, for a cursor to resume after
        let mut last;
        loop {
            match next {
                None => return,
                Some(Err(e)) => return end(format!("stream {}: {e}", spec.stream)),
                Some(Ok(m)) => {
                    let Ok(info) = m.info() else {
                        return end("a message without JetStream metadata".into());
                    };
                    last = info.stream_sequence;
                    if let Some(e) = event(&m, last, &spec) {
                        events.push(e);
                    }
                }
            }
            if events.len() >= spec.max_batch {
                break;
            }
            match messages.next().now_or_never() {
                Some(n) => next = n,
                None => break,
            }
        }
        if events.is_empty() {
            continue;
        }
        let batch = (
            proto::SubscribeResponse {
                events: std::mem::take(&mut events),
            }
            .encode_to_vec(),
            last,
        );
        let sent = match tx.try_send(batch) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(batch)) => {
                matches!(
                    tokio::time::timeout(stall, tx.send(batch)).await,
                    Ok(Ok(()))
                )
            }
        };
        if !sent {
            return end(format!(
                "slow subscriber: its buffer of {} batches stayed full for {} ms",
                spec.buffer, spec.max_stall_ms,
            ));
        }
    }
}

/// The headers a subscriber gets, found in one pass over the message's header map (a
/// lookup per name would hash each of them again; the profile showed it).
#[derive(Default)]
struct Ce<'a> {
    id: Option<&'a str>,
    source: Option<&'a str>,
    specversion: Option<&'a str>,
    ce_type: Option<&'a str>,
    time: Option<&'a str>,
    subject: Option<&'a str>,
    partitionkey: Option<&'a str>,
    dataschema: Option<&'a str>,
    content_type: Option<&'a str>,
    route: Option<&'a str>,
}

impl<'a> Ce<'a> {
    fn of(h: &'a HeaderMap) -> Ce<'a> {
        let mut ce = Ce::default();
        for (name, values) in h.iter() {
            let Some(v) = values.first().map(|v| v.as_str()) else {
                continue;
            };
            let slot = match AsRef::<str>::as_ref(name) {
                n if n.eq_ignore_ascii_case("ce-id") => &mut ce.id,
                n if n.eq_ignore_ascii_case("ce-source") => &mut ce.source,
                n if n.eq_ignore_ascii_case("ce-specversion") => &mut ce.specversion,
                n if n.eq_ignore_ascii_case("ce-type") => &mut ce.ce_type,
                n if n.eq_ignore_ascii_case("ce-time") => &mut ce.time,
                n if n.eq_ignore_ascii_case("ce-subject") => &mut ce.subject,
                n if n.eq_ignore_ascii_case("ce-partitionkey") => &mut ce.partitionkey,
                n if n.eq_ignore_ascii_case("ce-dataschema") => &mut ce.dataschema,
                n if n.eq_ignore_ascii_case("content-type") => &mut ce.content_type,
                n if n.eq_ignore_ascii_case("Millstream-Route") => &mut ce.route,
                _ => continue,
            };
            *slot = Some(v);
        }
        ce
    }
}

/// A header value as text: the binding percent-encodes what is not plain ASCII.
fn text(v: Option<&str>) -> String {
    match v {
        Some(v) if v.contains('%') => percent_decode_str(v).decode_utf8_lossy().into_owned(),
        Some(v) => v.to_owned(),
        None => String::new(),
    }
}

/// A stored output as a `SubscribedEvent`, or None when the filters drop it.
fn event(
    m: &async_nats::jetstream::Message,
    sequence: u64,
    spec: &SubscriptionSpec,
) -> Option<proto::SubscribedEvent> {
    let empty = HeaderMap::new();
    let ce = Ce::of(m.headers.as_ref().unwrap_or(&empty));
    let ce_type = text(ce.ce_type);
    if !spec.types.is_empty() && !spec.types.contains(&ce_type) {
        return None;
    }
    let route = text(ce.route);
    if !spec.routes.is_empty() && !spec.routes.contains(&route) {
        return None;
    }
    let mut attributes = std::collections::BTreeMap::new();
    let mut attr = |name: &str, a: Attr| {
        attributes.insert(
            name.to_owned(),
            proto::CloudEventAttributeValue { attr: Some(a) },
        );
    };
    if let Some(t) = ce.time {
        let t = text(Some(t));
        attr(
            "time",
            match chrono::DateTime::parse_from_rfc3339(&t) {
                Ok(d) => Attr::CeTimestamp(prost_types::Timestamp {
                    seconds: d.timestamp(),
                    nanos: i32::try_from(d.timestamp_subsec_nanos()).unwrap_or(0),
                }),
                Err(_) => Attr::CeString(t),
            },
        );
    }
    for (name, v) in [
        ("subject", ce.subject),
        ("partitionkey", ce.partitionkey),
        ("datacontenttype", ce.content_type),
    ] {
        if v.is_some() {
            attr(name, Attr::CeString(text(v)));
        }
    }
    if ce.dataschema.is_some() {
        attr("dataschema", Attr::CeUri(text(ce.dataschema)));
    }
    // JSON is text: the CloudEvents protobuf format puts it in text_data.
    let data = match std::str::from_utf8(&m.payload) {
        Ok(s) => cloud_event::Data::TextData(s.to_owned()),
        Err(_) => cloud_event::Data::BinaryData(m.payload.to_vec()),
    };
    Some(proto::SubscribedEvent {
        event: Some(proto::CloudEvent {
            id: text(ce.id),
            source: text(ce.source),
            spec_version: ce
                .specversion
                .map_or_else(|| "1.0".into(), |v| text(Some(v))),
            r#type: ce_type,
            attributes,
            data: Some(data),
        }),
        sequence,
        subject: m.subject.to_string(),
        route,
    })
}
