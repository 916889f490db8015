//! gRPC `Router.Publish` / `PublishStream` (issue 5). A serialised `PublishRequest` is
//! decoded here (prost), its events enter the same lanes, pipeline and egress as NATS input,
//! and the `PublishResponse` is encoded once the last of them has its verdict: after its
//! outputs' PubAcks, exactly when a JetStream input would be acked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use prost::Message;

use super::lanes::{Inbound, LaneSenders};
use super::Shared;
use crate::error::Reason;
use crate::pipeline::{Outcome, Status};
use crate::proto::{self, verdict};

/// Called once per request, from a plane thread: the serialised `PublishResponse`, or why
/// the plane could not answer.
pub type Done = Box<dyn FnOnce(Result<Vec<u8>, String>) + Send>;

/// Events per request at most: a bigger batch would hold a whole lane.
pub const MAX_EVENTS: usize = 10_000;

/// One request in flight: a verdict slot per event.
pub(crate) struct PublishCall {
    batch_id: u64,
    verdicts: Mutex<Vec<proto::Verdict>>,
    remaining: AtomicUsize,
    done: Mutex<Option<Done>>,
}

impl PublishCall {
    fn set(&self, index: usize, verdict: proto::Verdict) {
        let mut v = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = v.get_mut(index) {
            *slot = verdict;
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let response = proto::PublishResponse {
                batch_id: self.batch_id,
                verdicts: std::mem::take(&mut *v),
            };
            drop(v);
            self.answer(Ok(response.encode_to_vec()));
        }
    }

    fn answer(&self, result: Result<Vec<u8>, String>) {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(done) = done {
            done(result);
        }
    }
}

/// An event's way back to its caller, carried through the lanes with the event.
pub(crate) struct Reply {
    call: Option<Arc<PublishCall>>,
    index: usize,
    verdict: proto::Verdict,
}

impl Reply {
    pub fn set(&mut self, verdict: proto::Verdict) {
        self.verdict = verdict;
    }

    /// The outputs could not be written: the caller is told, with the reason.
    pub fn output_failed(&mut self, detail: String) {
        self.verdict = rejected(Reason::OutputFailed.as_str(), detail, String::new());
    }

    pub fn send(mut self) {
        if let Some(call) = self.call.take() {
            call.set(self.index, std::mem::take(&mut self.verdict));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // Dropped unsent only when the plane stops with the event still queued.
        if let Some(call) = self.call.take() {
            call.answer(Err(
                "the data plane stopped before the batch was settled".into()
            ));
        }
    }
}

fn rejected(reason: &str, detail: String, route: String) -> proto::Verdict {
    proto::Verdict {
        status: verdict::Status::Rejected as i32,
        reason: reason.to_owned(),
        detail,
        route,
        ..Default::default()
    }
}

/// What the caller is told about a processed event.
pub(crate) fn verdict_of(out: &Outcome) -> proto::Verdict {
    if let Some(r) = &out.rejection {
        return rejected(
            r.reason.as_str(),
            r.detail.clone(),
            out.route.as_deref().unwrap_or_default().to_owned(),
        );
    }
    let status = match out.status {
        Status::Routed => verdict::Status::Accepted,
        Status::Duplicate => verdict::Status::Duplicate,
        Status::Stale => verdict::Status::Stale,
        Status::DeadLetter => verdict::Status::Rejected,
    };
    let (canonical_id, canonical_type) = out
        .attributes
        .as_ref()
        .map(|a| (a.id().to_owned(), a.ce_type.to_string()))
        .unwrap_or_default();
    proto::Verdict {
        status: status as i32,
        canonical_id,
        canonical_type,
        destinations: out
            .deliveries
            .iter()
            .map(|d| proto::Destination {
                route: d.route.to_string(),
                subject: d.subject.clone(),
            })
            .collect(),
        skipped: out
            .skipped
            .iter()
            .map(|s| proto::Skipped {
                route: s.route.to_string(),
                status: s.status.as_str().to_owned(),
                detail: s.detail.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A subject an event could have been published on: tokens of printable ASCII without
/// wildcards. Anything else is refused with the whole request, so a dead letter never
/// records a subject that a replay could not publish to.
fn valid_subject(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.split('.').all(|t| {
            !t.is_empty() && t != "*" && t != ">" && t.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// Decode and check a request; the error names the first bad event.
pub(crate) fn decode(request: &[u8]) -> Result<proto::PublishRequest, String> {
    // one copy of the request; every event's payload is a slice of it
    let req = proto::PublishRequest::decode(Bytes::copy_from_slice(request))
        .map_err(|e| format!("not a millstream.v1.PublishRequest: {e}"))?;
    if req.events.len() > MAX_EVENTS {
        return Err(format!(
            "{} events in one request; at most {MAX_EVENTS}",
            req.events.len()
        ));
    }
    if let Some((i, e)) = req
        .events
        .iter()
        .enumerate()
        .find(|(_, e)| !valid_subject(&e.subject))
    {
        return Err(format!(
            "event {i}: subject {:?} is not a NATS subject an event can be published on",
            e.subject
        ));
    }
    Ok(req)
}

/// Queue a decoded request's events in their lanes (waiting for room: a producer is held
/// back rather than shed). `done` is called when the last verdict is in.
pub(crate) async fn enqueue(
    shared: Arc<Shared>,
    senders: LaneSenders,
    req: proto::PublishRequest,
    done: Done,
) {
    let n = req.events.len();
    let call = Arc::new(PublishCall {
        batch_id: req.batch_id,
        verdicts: Mutex::new(vec![proto::Verdict::default(); n]),
        remaining: AtomicUsize::new(n),
        done: Mutex::new(Some(done)),
    });
    if n == 0 {
        call.answer(Ok(proto::PublishResponse {
            batch_id: req.batch_id,
            verdicts: Vec::new(),
        }
        .encode_to_vec()));
        return;
    }
    let classifier = shared.routing().classifier.clone();
    shared
        .metrics
        .grpc_events
        .fetch_add(n as u64, Ordering::Relaxed);
    for (index, e) in req.events.into_iter().enumerate() {
        let (lane, _) = classifier.classify(&e.subject);
        let msg = Inbound {
            subject: e.subject.into(),
            payload: e.data,
            ack_to: None,
            delivered: 1,
            retry: None,
            lane,
            received: Instant::now(),
            reply: Some(Box::new(Reply {
                call: Some(call.clone()),
                index,
                verdict: proto::Verdict::default(),
            })),
        };
        if !senders.send(msg, false).await {
            // closed: the dropped reply has answered the call
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_a_producer_may_name() {
        for ok in ["odoo.stock_move", "mes.dus.m1.telemetry", "a"] {
            assert!(valid_subject(ok), "{ok}");
        }
        for bad in ["", "odoo.*", "odoo.>", "a..b", "a b", ".a", "a.", "ä"] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_request_names_the_event() {
        let req = proto::PublishRequest {
            events: vec![
                proto::SourceEvent {
                    subject: "odoo.stock_move".into(),
                    data: Bytes::from_static(b"{}"),
                },
                proto::SourceEvent {
                    subject: "odoo.>".into(),
                    data: Bytes::from_static(b"{}"),
                },
            ],
            batch_id: 7,
        };
        let err = decode(&req.encode_to_vec()).expect_err("a wildcard subject is refused");
        assert!(err.starts_with("event 1: subject \"odoo.>\""), "{err}");
        assert!(decode(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn the_call_answers_once_every_verdict_is_in() {
        let (tx, rx) = std::sync::mpsc::channel();
        let call = Arc::new(PublishCall {
            batch_id: 3,
            verdicts: Mutex::new(vec![proto::Verdict::default(); 2]),
            remaining: AtomicUsize::new(2),
            done: Mutex::new(Some(Box::new(move |r| tx.send(r).unwrap_or(())))),
        });
        let reply = |index| Reply {
            call: Some(call.clone()),
            index,
            verdict: proto::Verdict::default(),
        };
        let mut second = reply(1);
        second.output_failed("stream gone".into());
        second.send();
        assert!(rx.try_recv().is_err(), "answered before the first verdict");
        let mut first = reply(0);
        first.set(proto::Verdict {
            status: verdict::Status::Accepted as i32,
            ..Default::default()
        });
        first.send();
        let bytes = rx.try_recv().expect("answered").expect("a response");
        let resp = proto::PublishResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(resp.batch_id, 3);
        assert_eq!(resp.verdicts[0].status(), verdict::Status::Accepted);
        assert_eq!(resp.verdicts[1].status(), verdict::Status::Rejected);
        assert_eq!(resp.verdicts[1].reason, "output_failed");
    }

    #[test]
    fn a_dropped_reply_fails_the_call() {
        let (tx, rx) = std::sync::mpsc::channel();
        let call = Arc::new(PublishCall {
            batch_id: 0,
            verdicts: Mutex::new(vec![proto::Verdict::default(); 1]),
            remaining: AtomicUsize::new(1),
            done: Mutex::new(Some(Box::new(move |r| tx.send(r).unwrap_or(())))),
        });
        drop(Reply {
            call: Some(call),
            index: 0,
            verdict: proto::Verdict::default(),
        });
        assert!(rx.try_recv().expect("answered").is_err());
    }
}
