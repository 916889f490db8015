//! Egress: canonical events to core NATS (best effort) or JetStream (at least once, inside
//! the client's bounded PubAck window), dead letters to their stream, and the input ack that
//! waits for all of them (decisions 5, 6, 7).
//!
//! Output messages use the CloudEvents NATS binding in binary mode: `ce-` headers with
//! percent-encoded values, the canonical entity as the JSON body.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::AckKind;
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::lanes::{ix, Inbound};
use super::{publish, wire, Shared};
use crate::pipeline::{CeAttributes, Delivery, Outcome, Status};
use crate::plan::DeliveryMode;
use crate::{Reason, Rejection};

/// What the CloudEvents HTTP/NATS bindings require escaping in a header value: controls
/// (a CR/LF would end the header), `%` itself, and (by `utf8_percent_encode`) all non-ASCII.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b'%').add(b'"');

fn enc(v: &str) -> std::borrow::Cow<'_, str> {
    // Nearly every value is plain ASCII: skip the encoder's formatting machinery then. A fold
    // without early exit, so the compiler checks many bytes per instruction (the
    // short-circuiting `all` it replaced was 2% of the router).
    let plain = v.bytes().fold(true, |ok, b| {
        ok & (b.wrapping_sub(0x20) < 0x5f) & (b != b'%') & (b != b'"')
    });
    if plain {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(utf8_percent_encode(v, HEADER_VALUE).to_string())
}

// Header names built at compile time: `HeaderMap::insert` with a `&str` name validates,
// classifies and copies it on every call, which the first profiles showed as a sixth of the
// router's time.
const CE_SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
const CE_ID: HeaderName = HeaderName::from_static("ce-id");
const CE_SOURCE: HeaderName = HeaderName::from_static("ce-source");
const CE_TYPE: HeaderName = HeaderName::from_static("ce-type");
const CE_DATASCHEMA: HeaderName = HeaderName::from_static("ce-dataschema");
const CE_TIME: HeaderName = HeaderName::from_static("ce-time");
const CE_SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
const CE_PARTITIONKEY: HeaderName = HeaderName::from_static("ce-partitionkey");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");
const ROUTE: HeaderName = HeaderName::from_static("Millstream-Route");

/// Per (route, source, canonical type), the headers every output of that kind carries, built
/// once; each event adds its own four. Owned by the egress task.
#[derive(Default)]
pub(crate) struct HeaderCache {
    templates: hashbrown::HashMap<(usize, usize, usize), Template>,
    /// The last header block built, reused so a block costs no allocation.
    block: Vec<u8>,
}

struct Template {
    /// For async-nats (JetStream outputs): cloned per event.
    map: HeaderMap,
    /// For the egress connection: `NATS/1.0` and the fixed header lines, as bytes.
    block: Vec<u8>,
}

/// The headers that vary per event, in CloudEvents attribute order.
fn own_headers(a: &CeAttributes) -> [(HeaderName, Option<&str>); 4] {
    [
        (CE_ID, Some(a.id())),
        (CE_TIME, a.time()),
        (CE_SUBJECT, a.subject()),
        (CE_PARTITIONKEY, a.partitionkey()),
    ]
}

impl HeaderCache {
    fn template(&mut self, a: &CeAttributes, route_ix: usize, route: &str) -> &Template {
        // The attributes' Arcs belong to the pipeline's compiled sources and mappings, so
        // their addresses identify them for the pipeline's lifetime.
        let key = (
            route_ix,
            Arc::as_ptr(&a.source).cast::<u8>() as usize,
            Arc::as_ptr(&a.ce_type).cast::<u8>() as usize,
        );
        self.templates.entry(key).or_insert_with(|| {
            let fixed = [
                (CE_SPECVERSION, std::borrow::Cow::Borrowed("1.0")),
                (CE_SOURCE, enc(&a.source)),
                (CE_TYPE, enc(&a.ce_type)),
                (CE_DATASCHEMA, enc(&a.dataschema)),
                (CONTENT_TYPE, std::borrow::Cow::Borrowed("application/json")),
                (ROUTE, enc(route)),
            ];
            let mut map = HeaderMap::new();
            let mut block = b"NATS/1.0\r\n".to_vec();
            for (name, value) in fixed {
                header_line(&mut block, name.as_ref(), &value);
                map.insert(name, value.as_ref());
            }
            Template { map, block }
        })
    }

    /// The event's headers as async-nats wants them.
    fn headers(&mut self, a: &CeAttributes, route_ix: usize, route: &str) -> HeaderMap {
        let mut h = self.template(a, route_ix, route).map.clone();
        for (name, value) in own_headers(a) {
            if let Some(v) = value {
                h.insert(name, enc(v).as_ref());
            }
        }
        h
    }

    /// The event's whole header block, for the egress connection; for JetStream with a
    /// `Nats-Msg-Id` of the event's id and its route (see `msg_id`).
    fn block(
        &mut self,
        a: &CeAttributes,
        route_ix: usize,
        route: &str,
        with_msg_id: bool,
    ) -> &[u8] {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.extend_from_slice(&self.template(a, route_ix, route).block);
        for (name, value) in own_headers(a) {
            if let Some(v) = value {
                header_line(&mut block, name.as_ref(), &enc(v));
            }
        }
        if with_msg_id {
            // written in place; the same text as `msg_id` (`enc` maps each character on its
            // own, and `@` is plain)
            block.extend_from_slice(b"Nats-Msg-Id: ");
            block.extend_from_slice(enc(a.id()).as_bytes());
            block.push(b'@');
            block.extend_from_slice(enc(route).as_bytes());
            block.extend_from_slice(b"\r\n");
        }
        block.extend_from_slice(b"\r\n");
        self.block = block;
        &self.block
    }
}

/// An output's JetStream message id: unique per route, since two routes may share an output
/// stream and JetStream deduplicates by id per stream. A redelivered input renders the same id.
fn msg_id(a: &CeAttributes, route: &str) -> String {
    enc(&format!("{}@{}", a.id(), route)).into_owned()
}

fn header_line(block: &mut Vec<u8>, name: &str, value: &str) {
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend_from_slice(value.as_bytes());
    block.extend_from_slice(b"\r\n");
}

/// A PubAck on its way, from whichever connection carried the publish.
enum Ack {
    Nats(PublishAckFuture),
    Wire(wire::AckWait),
}

impl Ack {
    async fn wait(self) -> Result<(), String> {
        match self {
            Ack::Nats(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
            Ack::Wire(w) => w.wait().await,
        }
    }
}

/// One acknowledgement an input waits for.
enum Pending {
    Output {
        ack: Ack,
        route_ix: usize,
        dedup_id: Option<u128>,
    },
    Refused {
        route_ix: usize,
        dedup_id: Option<u128>,
        error: String,
    },
    DeadLetter(Result<PublishAckFuture, String>),
}

/// An event whose input ack waits for PubAcks.
pub(crate) struct Waiting {
    msg: Inbound,
    pending: Vec<Pending>,
    source: Option<Arc<str>>,
}

/// Counts the routes that skipped the event, by why.
fn count_skipped(shared: &Shared, out: &Outcome) {
    let m = &shared.metrics;
    let routing = shared.routing();
    for s in &out.skipped {
        if let Some(r) = routing.route_ix.get(&s.route).and_then(|&i| m.route(i)) {
            match s.status {
                Status::Stale => r.stale.fetch_add(1, Relaxed),
                _ => r.duplicate.fetch_add(1, Relaxed),
            };
        }
    }
}

/// Counts a best-effort output as published or failed.
fn count_sent(shared: &Shared, d: &Delivery, sent: Result<(), String>) {
    let m = &shared.metrics;
    match sent {
        Ok(()) => {
            m.published.fetch_add(1, Relaxed);
            if let Some(r) = m.route(d.route_ix) {
                r.out.fetch_add(1, Relaxed);
            }
        }
        Err(e) => {
            m.outputs_failed.fetch_add(1, Relaxed);
            if let Some(r) = m.route(d.route_ix) {
                r.failed.fetch_add(1, Relaxed);
            }
            m.error(format!("publish {}: {e}", d.subject));
        }
    }
}

/// What every outcome gets first: its verdict for a gRPC caller, and its skips counted.
fn note_outcome(shared: &Shared, msg: &mut Inbound, out: &Outcome) {
    if let Some(reply) = msg.reply.as_mut() {
        reply.set(publish::verdict_of(out));
    }
    count_skipped(shared, out);
}

/// A best-effort output queued on the egress connection, and counted.
fn publish_now(
    shared: &Shared,
    w: &wire::Wire,
    headers: &mut HeaderCache,
    attrs: &CeAttributes,
    d: &Delivery,
    data: &[u8],
) {
    let block = headers.block(attrs, d.route_ix, &d.route, false);
    let sent = w.publish(&d.subject, block, data);
    count_sent(shared, d, sent.map_err(|e| e.to_string()));
}

/// `dispatch` without an await, for what most events need: on the egress connection, an
/// event whose outputs are all best effort, or that every route skipped, is published and
/// its input acked here, the outcome only borrowed. Building `dispatch`'s future for it
/// moved the outcome and the input into the future first, a few hundred bytes an event (a
/// few % of the router in profiles, as memmove). Returns false, having done nothing, for
/// any other event: `dispatch` takes it.
pub(crate) fn dispatch_now(
    shared: &Shared,
    headers: &mut HeaderCache,
    msg: &mut Inbound,
    out: &Outcome,
) -> bool {
    let Some(w) = &shared.wire else {
        return false;
    };
    let attrs = match (out.status, &out.attributes) {
        (Status::Routed, Some(a))
            if out
                .deliveries
                .iter()
                .all(|d| d.mode == DeliveryMode::BestEffort) =>
        {
            Some(a)
        }
        (Status::Duplicate | Status::Stale, _) => None,
        _ => return false,
    };
    note_outcome(shared, msg, out);
    if let Some(a) = attrs {
        for d in &out.deliveries {
            publish_now(shared, w, headers, a, d, &out.data);
        }
    }
    finish_now(shared, w, msg);
    true
}

/// Hand one processed event to its outputs. The input is acked now if nothing needs a
/// PubAck; otherwise the event is returned, for `settle_batch` to finish once its PubAcks are
/// in. `dispatch_now` takes the common cases without an await.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    headers: &mut HeaderCache,
    mut msg: Inbound,
    out: &Outcome,
) -> Option<Waiting> {
    let m = &shared.metrics;
    note_outcome(shared, &mut msg, out);
    let mut pending = Vec::new();
    if let (Status::Routed, Some(attrs)) = (out.status, &out.attributes) {
        let data = &out.data[..];
        for d in &out.deliveries {
            match d.mode {
                DeliveryMode::BestEffort => match &shared.wire {
                    Some(w) => publish_now(shared, w, headers, attrs, d, data),
                    None => {
                        let sent = shared
                            .client
                            .publish_with_headers(
                                d.subject.clone(),
                                headers.headers(attrs, d.route_ix, &d.route),
                                Bytes::copy_from_slice(data),
                            )
                            .await;
                        count_sent(shared, d, sent.map_err(|e| e.to_string()));
                    }
                },
                DeliveryMode::AtLeastOnce => {
                    m.published.fetch_add(1, Relaxed);
                    let sent = match &shared.wire {
                        Some(w) => {
                            let block = headers.block(attrs, d.route_ix, &d.route, true);
                            w.publish_acked(&d.subject, block, data)
                                .await
                                .map(Ack::Wire)
                                .map_err(|e| e.to_string())
                        }
                        None => {
                            let publish = PublishMessage::build()
                                .payload(Bytes::copy_from_slice(data))
                                .headers(headers.headers(attrs, d.route_ix, &d.route))
                                .message_id(msg_id(attrs, &d.route));
                            shared
                                .js
                                .send_publish(d.subject.clone(), publish)
                                .await
                                .map(Ack::Nats)
                                .map_err(|e| e.to_string())
                        }
                    };
                    pending.push(match sent {
                        Ok(ack) => Pending::Output {
                            ack,
                            route_ix: d.route_ix,
                            dedup_id: d.dedup_id,
                        },
                        Err(error) => Pending::Refused {
                            route_ix: d.route_ix,
                            dedup_id: d.dedup_id,
                            error,
                        },
                    });
                }
            }
        }
    } else if let Some(rejection) = &out.rejection {
        let routing = shared.routing();
        if let Some(r) = out
            .route
            .as_ref()
            .and_then(|n| routing.route_ix.get(n))
            .and_then(|&i| m.route(i))
        {
            r.dead_letter.fetch_add(1, Relaxed);
        }
        let route = out.route.as_deref();
        let source = out.source.as_deref();
        pending.push(Pending::DeadLetter(
            dead_letter(shared, &msg, rejection, route, source).await,
        ));
    }
    if pending.is_empty() {
        finish(shared, msg).await;
        return None;
    }
    Some(Waiting {
        msg,
        pending,
        source: out.source.clone(),
    })
}

/// Finish a batch's waiting events in one task: await their PubAcks in order, confirm or
/// release their dedup keys under one lock, then ack (or nak, or dead-letter) each input.
/// One task and one lock per batch rather than per event.
pub(crate) async fn settle_batch(shared: Arc<Shared>, batch: Vec<Waiting>) {
    let mut settled: Vec<(usize, u128, bool)> = Vec::new();
    let mut done = Vec::with_capacity(batch.len());
    for w in batch {
        let errors = settle(&shared, w.pending, &mut settled).await;
        done.push((w.msg, errors, w.source));
    }
    if !settled.is_empty() {
        shared.pipeline().settle(&settled);
    }
    for (msg, errors, source) in done {
        after(&shared, msg, errors, source).await;
    }
    if let Some(w) = &shared.wire {
        w.send_queued();
    }
}

/// The pass-through relay (benchmark ceiling): same ingest, lanes and acks, no stages.
/// `relay_now` takes every event when there is an egress connection, as `dispatch_now`.
pub(crate) async fn relay(shared: &Arc<Shared>, msg: Inbound) {
    let subject = format!("passthrough.{}", msg.subject);
    let sent = shared.client.publish(subject, msg.payload.clone()).await;
    relayed(shared, sent.map_err(|e| e.to_string()));
    finish(shared, msg).await;
}

/// `relay` on the egress connection, without an await; false, having done nothing, when
/// there is none.
pub(crate) fn relay_now(shared: &Shared, msg: &mut Inbound) -> bool {
    let Some(w) = &shared.wire else {
        return false;
    };
    let subject = format!("passthrough.{}", msg.subject);
    let sent = w.publish(&subject, &[], &msg.payload);
    relayed(shared, sent.map_err(|e| e.to_string()));
    finish_now(shared, w, msg);
    true
}

fn relayed(shared: &Shared, sent: Result<(), String>) {
    match sent {
        Ok(()) => {
            shared.metrics.relayed.fetch_add(1, Relaxed);
        }
        Err(e) => shared.metrics.error(format!("relay: {e}")),
    }
}

/// Everything the event needed is acknowledged: ack its input (or answer its gRPC caller),
/// record its latency.
async fn finish(shared: &Shared, mut msg: Inbound) {
    let acked = match &msg.ack_to {
        Some(ack_to) => Some(respond(shared, ack_to, AckKind::Ack).await),
        None => None,
    };
    finished(shared, &mut msg, acked);
}

/// `finish` on the egress connection, where an ack is queued without an await.
fn finish_now(shared: &Shared, w: &wire::Wire, msg: &mut Inbound) {
    let acked = msg
        .ack_to
        .as_ref()
        .map(|ack_to| respond_on(w, ack_to, AckKind::Ack));
    finished(shared, msg, acked);
}

fn finished(shared: &Shared, msg: &mut Inbound, acked: Option<Result<(), String>>) {
    if let Some(reply) = msg.reply.take() {
        reply.send();
    }
    match acked {
        // The ack is lost only if the connection is: JetStream redelivers after ack_wait,
        // and the output's message id makes the second publish a no-op.
        Some(Err(e)) => shared.metrics.error(format!("ack: {e}")),
        Some(Ok(())) => {
            shared.metrics.acked.fetch_add(1, Relaxed);
        }
        None => {}
    }
    shared.metrics.lanes[ix(msg.lane)].observe(msg.received.elapsed());
}

/// Ack or nak a JetStream delivery: a publish to its reply subject. On the egress connection
/// where there is one, queued with the batch's outputs and written with them in one write;
/// through async-nats each ack is a message through the client's channel, its connection
/// task and a write of its own. The reply subject is the server's, so it is not validated.
async fn respond(
    shared: &Shared,
    ack_to: &async_nats::Subject,
    kind: AckKind,
) -> Result<(), String> {
    match &shared.wire {
        Some(w) => respond_on(w, ack_to, kind),
        None => shared
            .client
            .publish(ack_to.clone(), kind.into())
            .await
            .map_err(|e| e.to_string()),
    }
}

fn respond_on(w: &wire::Wire, ack_to: &str, kind: AckKind) -> Result<(), String> {
    let body: Bytes = kind.into();
    w.publish(ack_to, &[], &body).map_err(|e| e.to_string())
}

/// Await one event's PubAcks; returns what failed, and notes each dedup key's fate.
async fn settle(
    shared: &Shared,
    pending: Vec<Pending>,
    settled: &mut Vec<(usize, u128, bool)>,
) -> Vec<String> {
    let m = &shared.metrics;
    let mut errors: Vec<String> = Vec::new();
    for p in pending {
        match p {
            Pending::Output {
                ack,
                route_ix,
                dedup_id,
            } => {
                let ok = match ack.wait().await {
                    Ok(_) => {
                        m.outputs_acked.fetch_add(1, Relaxed);
                        if let Some(r) = m.route(route_ix) {
                            r.out.fetch_add(1, Relaxed);
                        }
                        true
                    }
                    Err(e) => {
                        errors.push(format!("route {}: {e}", route_name(shared, route_ix)));
                        false
                    }
                };
                if let Some(id) = dedup_id {
                    settled.push((route_ix, id, ok));
                }
                if !ok {
                    m.outputs_failed.fetch_add(1, Relaxed);
                    if let Some(r) = m.route(route_ix) {
                        r.failed.fetch_add(1, Relaxed);
                    }
                }
            }
            Pending::Refused {
                route_ix,
                dedup_id,
                error,
            } => {
                m.outputs_failed.fetch_add(1, Relaxed);
                if let Some(r) = m.route(route_ix) {
                    r.failed.fetch_add(1, Relaxed);
                }
                if let Some(id) = dedup_id {
                    settled.push((route_ix, id, false));
                }
                errors.push(format!("route {}: {error}", route_name(shared, route_ix)));
            }
            Pending::DeadLetter(ack) => {
                let r = match ack {
                    Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => {
                        m.dead_letters.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        m.dead_letter_failed.fetch_add(1, Relaxed);
                        errors.push(format!("dead letter: {e}"));
                    }
                }
            }
        }
    }
    errors
}

/// Ack an event whose outputs all succeeded; otherwise nak it with backoff, or on its last
/// delivery keep it as an `output_failed` dead letter.
async fn after(shared: &Shared, mut msg: Inbound, errors: Vec<String>, source: Option<Arc<str>>) {
    let m = &shared.metrics;
    if errors.is_empty() {
        finish(shared, msg).await;
        return;
    }
    let detail = errors.join("; ");
    if let Some(reply) = msg.reply.as_mut() {
        reply.output_failed(detail.clone());
    }
    m.error(detail.clone());
    let last_try = msg
        .retry
        .as_ref()
        .is_none_or(|r| msg.delivered >= r.max_deliver);
    if !last_try {
        if let (Some(ack_to), Some(retry)) = (&msg.ack_to, &msg.retry) {
            let i = usize::try_from(msg.delivered - 1).unwrap_or(0);
            let delay = retry
                .backoff_ms
                .get(i)
                .or(retry.backoff_ms.last())
                .copied()
                .unwrap_or(1000);
            m.naks.fetch_add(1, Relaxed);
            let _ = respond(
                shared,
                ack_to,
                AckKind::Nak(Some(Duration::from_millis(delay))),
            )
            .await;
            return;
        }
    }
    // The last delivery, or a core NATS input that cannot be redelivered: keep the event as
    // a dead letter so it can be replayed once the output is back.
    let rejection = Rejection::new(
        Reason::OutputFailed,
        format!("after {} deliveries: {detail}", msg.delivered),
    );
    let kept = match dead_letter(shared, &msg, &rejection, None, source.as_deref()).await {
        Ok(f) => f.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match kept {
        Ok(()) => {
            m.dead_letters.fetch_add(1, Relaxed);
            finish(shared, msg).await;
        }
        Err(e) => {
            // Nowhere safe to put it: leave it unacked in its stream (redelivered later); a
            // gRPC caller is told it failed.
            m.dead_letter_failed.fetch_add(1, Relaxed);
            m.error(format!("dead letter: {e}"));
            if let Some(reply) = msg.reply.take() {
                reply.send();
            }
            if let Some(ack_to) = &msg.ack_to {
                m.naks.fetch_add(1, Relaxed);
                let _ = respond(shared, ack_to, AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
    }
}

fn route_name(shared: &Shared, ix: usize) -> Arc<str> {
    shared.metrics.route_name(ix)
}

/// Publish the original payload to `<prefix>.<reason>` with headers that say why.
async fn dead_letter(
    shared: &Shared,
    msg: &Inbound,
    rejection: &Rejection,
    route: Option<&str>,
    source: Option<&str>,
) -> Result<PublishAckFuture, String> {
    let mut h = HeaderMap::new();
    h.insert("Millstream-Reason", rejection.reason.as_str());
    h.insert("Millstream-Detail", enc(&rejection.detail).as_ref());
    if let Some(r) = route {
        h.insert("Millstream-Route", enc(r).as_ref());
    }
    if let Some(s) = source {
        h.insert("Millstream-Source", enc(s).as_ref());
    }
    h.insert("Millstream-Subject", enc(&msg.subject).as_ref());
    h.insert(
        "Millstream-Config-Version",
        shared.routing().config_version.as_str(),
    );
    h.insert("Millstream-Attempt", msg.delivered.to_string().as_ref());
    h.insert(
        "Millstream-Time",
        Utc::now()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
            .as_str(),
    );
    let subject = format!(
        "{}.{}",
        shared.dead_letter_prefix,
        rejection.reason.as_str()
    );
    let publish = PublishMessage::build()
        .payload(msg.payload.clone())
        .headers(h);
    shared
        .js
        .send_publish(subject, publish)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_matches_the_percent_encoder() {
        // the fast path may skip the encoder only where the encoder would change nothing
        let chars = [
            'a', 'Z', '0', ' ', '~', '%', '"', '\r', '\n', '\t', '\u{7f}', 'é', '€', '/',
        ];
        let mut rng = crate::test_rng(11);
        let random = (0..20_000).map(|_| {
            (0..rng() % 40)
                .map(|_| chars[(rng() % chars.len() as u64) as usize])
                .collect::<String>()
        });
        let every_ascii_char = (0u8..=0x7f).map(|b| char::from(b).to_string());
        for v in random.chain(every_ascii_char) {
            assert_eq!(
                enc(&v),
                utf8_percent_encode(&v, HEADER_VALUE).to_string(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn the_block_carries_the_msg_id_only_for_jetstream_and_as_msg_id_renders_it() {
        let mut headers = HeaderCache::default();
        for (id, route) in [("dus-press-07-1", "telemetry"), ("a%b \"é\"\r\n", "r@€")] {
            let a = CeAttributes::with_id(id);
            let with =
                String::from_utf8(headers.block(&a, 0, route, true).to_vec()).expect("ASCII");
            let line = format!("\r\nNats-Msg-Id: {}\r\n", msg_id(&a, route));
            assert!(with.contains(&line), "{with:?} lacks {line:?}");
            assert!(with.ends_with("\r\n\r\n"), "{with:?}");
            let without =
                String::from_utf8(headers.block(&a, 0, route, false).to_vec()).expect("ASCII");
            assert!(!without.contains("Nats-Msg-Id"), "{without:?}");
            assert_eq!(with.replace(&line, "\r\n"), without);
        }
    }
}
