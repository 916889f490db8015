//! An open-loop NATS load generator and a counting sink, in one process, for Millstream's
//! end-to-end benchmark.
//!
//! The generator schedules event `seq` at `seq / rate_per_s` seconds after the start and, in
//! time slices of about a millisecond, publishes every event whose time has come; it never
//! waits for replies (open loop), so a slow system under test shows up as latency and loss,
//! not as a lower offered rate. The sink sees the generator's output (directly or after a
//! router), finds a `<seq>_<t_ns>` stamp in each body and computes loss, duplicates,
//! delivered rate and latency on the same monotonic clock the generator used.
//!
//! [`run`] is a plain blocking function that owns its tokio runtime (two worker threads); do
//! not call it from inside an async runtime.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use millstream_loadgen::{run, LoadSpec, Publish, Sink};
//!
//! let spec = LoadSpec {
//!     url: "nats://127.0.0.1:4222".into(),
//!     templates: vec![(
//!         "mfg.raw.press.{seq}".into(),
//!         r#"{"ts":{ts},"line":"L{stamp}","temp":21.5}"#.into(),
//!     )],
//!     base_ts_ms: 1_700_000_000_000,
//!     rate_per_s: 25_000.0,
//!     duration: Duration::from_secs(10),
//!     warmup: Duration::from_secs(2),
//!     publish: Publish::Core,
//!     sink: Sink::Core { subject: "mfg.telemetry.>".into() },
//!     marker: r#""line":"L"#.into(),
//!     settle: Duration::from_secs(1),
//! };
//! let report = run(&spec, &|p| eprintln!("{:.1}s sent {} received {}", p.elapsed_s, p.sent, p.received))?;
//! println!(
//!     "offered {:.0}/s delivered {:.0}/s p99 {:.2} ms lost {}",
//!     report.offered_per_s, report.delivered_per_s, report.latency_ms.p99, report.lost
//! );
//! # Ok::<(), millstream_loadgen::LoadError>(())
//! ```

use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{pull, push, AckPolicy, DeliverPolicy},
};
use async_nats::{Client, ConnectOptions, Subject};
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

mod tally;
mod template;
mod wire;

use tally::Tally;
use template::StampParser;
/// The generator's subject and body templates, for code that renders the benchmark's events
/// without sending them (millstream-core's `event_cost` example), so that `{seq}`, `{ts}`
/// and `{stamp}` mean there what they mean in a load run.
pub use template::{Template, Values};

/// What to send, how fast, and where to count it.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// NATS server URL (both the generator and the sink connect here, on separate connections).
    pub url: String,
    /// (subject, body) templates, used round-robin. In both, `{seq}` is replaced by the
    /// event's sequence number (0,1,2,...) and `{ts}` by `base_ts_ms + seq` (unique epoch-ms
    /// timestamps, so a router's dedup never sees a repeat), `{stamp}` by `<seq>_<t_ns>`
    /// where t_ns is nanoseconds since the run's start on the shared monotonic clock, read
    /// just before the event is published. Every template needs a `{stamp}` (in the body,
    /// unless the system under test copies it from the subject into its output).
    pub templates: Vec<(String, String)>,
    pub base_ts_ms: u64,
    /// Open loop: events are scheduled by time, never by replies.
    pub rate_per_s: f64,
    /// Sending time, including warmup.
    pub duration: Duration,
    /// Events sent before this are delivered but not measured.
    pub warmup: Duration,
    pub publish: Publish,
    pub sink: Sink,
    /// The sink finds the first occurrence of this byte string in each received body and
    /// parses `<seq>_<t_ns>` right after it (e.g. marker `"line":"L` for a body containing
    /// `"line":"L{stamp}"`).
    pub marker: String,
    /// After the last send, keep receiving until nothing new arrives for this long (or 3x it
    /// in total).
    pub settle: Duration,
}

/// How the generator publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Core NATS publish, no acknowledgement.
    Core,
    /// JetStream publish with at most `window` PubAcks outstanding; a PubAck error (or
    /// timeout) is counted in [`LoadReport::publish_errors`], not fatal.
    JetStream { window: usize },
}

/// Where the sink counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// A core subscription, e.g. `mfg.telemetry.>` or `passthrough.>`.
    Core { subject: String },
    /// An ephemeral, ack-less JetStream consumer on the output stream, delivering only
    /// messages stored after the run starts (optionally only those matching `filter`), so
    /// stored messages are what is counted. For a plain `nats://` URL it is a push consumer
    /// with flow control read by the same light reader as [`Sink::Core`]; otherwise an
    /// async-nats ordered consumer. The push consumer is deleted when the run ends.
    Stream {
        stream: String,
        filter: Option<String>,
    },
}

/// Latency percentiles in milliseconds (microsecond resolution).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Events handed to the client (including those whose publish or PubAck failed).
    pub sent: u64,
    pub publish_errors: u64,
    /// Messages the sink saw with a valid marker and stamp (duplicates included).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub distinct: u64,
    /// Messages whose sequence number had been received before.
    pub duplicates: u64,
    /// `sent - distinct`.
    pub lost: u64,
    /// Sink messages without the marker or with a malformed or foreign stamp.
    pub unparsable: u64,
    /// Events sent inside the measured window `[warmup, duration)`, per second.
    pub offered_per_s: f64,
    /// Distinct events received whose send time is inside the measured window, per second of
    /// the window.
    pub delivered_per_s: f64,
    /// Distinct events received inside the measured window (by receive time), per second:
    /// the output rate while the load lasted. Above a router's capacity this is its
    /// throughput; `delivered_per_s` may then be higher, counting a backlog drained later.
    pub output_per_s: f64,
    /// When the last distinct event arrived, in seconds from the run's start: with
    /// `distinct`, the throughput of a path that lags behind the generator.
    pub last_receive_s: f64,
    /// Receive time minus send time of the first delivery of each measured event.
    pub latency_ms: Percentiles,
    /// The worst delay of an actual send behind its schedule. Up to ~2 ms is tokio's
    /// millisecond timer, a few ms more is the OS preempting the generator on a busy machine;
    /// tens of ms or more means the generator could not offer the asked rate (see also
    /// `offered_per_s`). Latency is measured from the actual send, so lag does not inflate it.
    pub generator_lag_ms: f64,
    /// Wall time from the first scheduled send to the end of the settle period.
    pub elapsed_s: f64,
    /// Set when the sink's subscription ended before the run did (nats-server cutting it off
    /// as a slow consumer, say): when and why. Every event after that counts as lost, so the
    /// run measured the harness, not the system under test.
    pub sink_closed: Option<String>,
}

/// Reported about every 500 ms while a run is in progress (and once at the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed_s: f64,
    pub sent: u64,
    pub received: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load spec: {0}")]
    InvalidSpec(String),
    #[error("could not start the load generator's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("could not connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("could not set up the sink: {0}")]
    Sink(String),
    #[error("a load generator task failed: {0}")]
    Task(String),
}

/// If a core-NATS generator falls behind, it gives up this long after `duration`; unsent
/// events are not counted as sent. (A JetStream run never gives up: see `Plan::new`.)
const GIVE_UP_AFTER_NS: u64 = 20_000_000;
/// Room for the rendered payloads of many events in one allocation.
const ARENA_BYTES: usize = 256 * 1024;
/// Sequence numbers the sink's bitset can track (512 MiB of bits).
const MAX_EVENTS: u64 = 1 << 32;

/// Runs the generator and the sink against `spec.url` and reports. Blocks the calling
/// thread; `progress` is called on it about every 500 ms.
pub fn run(
    spec: &LoadSpec,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<LoadReport, LoadError> {
    let plan = Plan::new(spec)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("millstream-loadgen")
        .enable_all()
        .build()?;
    let result = runtime.block_on(run_async(spec, plan, progress));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The validated, compiled form of a [`LoadSpec`] that the generator task owns.
#[derive(Debug)]
struct Plan {
    templates: Vec<(Template, Template)>,
    base_ts_ms: u64,
    ns_per_event: f64,
    /// Events scheduled inside `duration`: `0..total`.
    total: u64,
    window_ns: (u64, u64),
    stop_ns: u64,
}

impl Plan {
    fn new(spec: &LoadSpec) -> Result<Plan, LoadError> {
        let invalid = |m: String| Err(LoadError::InvalidSpec(m));
        if spec.templates.is_empty() {
            return invalid("no templates".into());
        }
        if !(spec.rate_per_s.is_finite() && spec.rate_per_s > 0.0) {
            return invalid(format!(
                "rate_per_s must be positive, not {}",
                spec.rate_per_s
            ));
        }
        if spec.duration.is_zero() || spec.warmup >= spec.duration {
            return invalid(format!(
                "need 0 <= warmup < duration (warmup {:?}, duration {:?})",
                spec.warmup, spec.duration
            ));
        }
        if spec.marker.is_empty() {
            return invalid("empty marker".into());
        }
        if let Publish::JetStream { window: 0 } = spec.publish {
            return invalid("JetStream publish window must be at least 1".into());
        }
        let mut templates = Vec::with_capacity(spec.templates.len());
        for (subject, body) in &spec.templates {
            if subject.is_empty() || subject.contains(char::is_whitespace) {
                return invalid(format!(
                    "subject template {subject:?} is empty or has whitespace"
                ));
            }
            let (s, b) = (Template::parse(subject), Template::parse(body));
            if !(s.has_stamp() || b.has_stamp()) {
                return invalid(format!(
                    "template ({subject:?}, {body:?}) has no {{stamp}}, so the sink cannot match it"
                ));
            }
            templates.push((s, b));
        }
        let total = (spec.rate_per_s * spec.duration.as_secs_f64())
            .ceil()
            .max(1.0);
        if total > MAX_EVENTS as f64 {
            return invalid(format!(
                "{total} events is more than the sink can track ({MAX_EVENTS})"
            ));
        }
        let duration_ns = nanos(spec.duration);
        Ok(Plan {
            templates,
            base_ts_ms: spec.base_ts_ms,
            ns_per_event: 1e9 / spec.rate_per_s,
            total: total as u64,
            window_ns: (nanos(spec.warmup), duration_ns),
            // A JetStream run checks that every event it published was stored once, so it
            // publishes all of them: PubAck backpressure slowing the generator is part of the
            // path it measures, and a moment's stall must not turn into a short count.
            stop_ns: match spec.publish {
                Publish::Core => duration_ns + GIVE_UP_AFTER_NS,
                Publish::JetStream { .. } => u64::MAX,
            },
        })
    }

    fn scheduled_ns(&self, seq: u64) -> u64 {
        (seq as f64 * self.ns_per_event) as u64
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn since(start: Instant) -> u64 {
    nanos(start.elapsed())
}

async fn run_async(
    spec: &LoadSpec,
    plan: Plan,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<LoadReport, LoadError> {
    let connect = |name: &str, options: ConnectOptions| {
        let url = spec.url.clone();
        let options = options
            .name(name)
            .connection_timeout(Duration::from_secs(5));
        async move {
            options
                .connect(url.as_str())
                .await
                .map_err(|e| LoadError::Connect {
                    url,
                    detail: e.to_string(),
                })
        }
    };
    // Room for long bursts: a full subscription channel drops messages (as a slow consumer).
    let sink_client = connect(
        "millstream-loadgen-sink",
        ConnectOptions::new().subscription_capacity(1 << 20),
    )
    .await?;
    // Subjects are checked once in `Plan::new`; placeholders only add digits and `_`.
    let gen_client = connect(
        "millstream-loadgen-generator",
        ConnectOptions::new()
            .client_capacity(1 << 16)
            .skip_subject_validation(true),
    )
    .await?;

    let OpenSink {
        bodies: messages,
        push_consumer,
    } = open_sink(&spec.url, &sink_client, &spec.sink).await?;
    let publisher = match spec.publish {
        Publish::Core => Publisher::Core(gen_client.clone()),
        Publish::JetStream { window } => Publisher::JetStream(
            jetstream::ContextBuilder::new()
                .max_ack_inflight(window)
                .backpressure_on_inflight(true)
                .build(gen_client.clone()),
        ),
    };

    let tally = Tally::new(StampParser::new(&spec.marker), plan.total, plan.window_ns);
    let window_s = (spec.duration - spec.warmup).as_secs_f64();
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let gen_end_ns = Arc::new(AtomicU64::new(u64::MAX));

    let start = Instant::now();
    let mut sink_task = tokio::spawn(sink(
        messages,
        tally,
        start,
        gen_end_ns.clone(),
        received.clone(),
        spec.settle,
    ));
    let mut gen_task = tokio::spawn(generate(plan, publisher, gen_client, start, sent.clone()));

    let report_progress = || {
        progress(&Progress {
            elapsed_s: start.elapsed().as_secs_f64(),
            sent: sent.load(Ordering::Relaxed),
            received: received.load(Ordering::Relaxed),
        })
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(500),
        Duration::from_millis(500),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut generated = None;
    let mut counted = None;
    while generated.is_none() || counted.is_none() {
        tokio::select! {
            r = &mut gen_task, if generated.is_none() => {
                gen_end_ns.store(since(start), Ordering::Relaxed);
                generated = Some(r);
            }
            r = &mut sink_task, if counted.is_none() => counted = Some(r),
            _ = ticker.tick() => report_progress(),
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    report_progress();
    if let Some((stream, name)) = push_consumer {
        // It would go away by itself (inactive_threshold) once the reader's connection
        // closes; deleting it now stops deliveries nobody counts any more, and a server that
        // runs several benchmarks in a row does not accumulate them. A failure changes no count.
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.delete_consumer(&name)).await;
    }
    let task = |e: tokio::task::JoinError| LoadError::Task(e.to_string());
    let outcome = generated.map_or(Err(LoadError::Task("no generator".into())), |r| {
        r.map_err(task)
    })?;
    let (tally, sink_closed) =
        counted.map_or(Err(LoadError::Task("no sink".into())), |r| r.map_err(task))?;

    Ok(LoadReport {
        sent: outcome.sent,
        publish_errors: outcome.publish_errors,
        received: tally.received,
        distinct: tally.distinct,
        duplicates: tally.duplicates,
        lost: outcome.sent.saturating_sub(tally.distinct),
        unparsable: tally.unparsable,
        offered_per_s: outcome.sent_in_window as f64 / window_s,
        delivered_per_s: tally.delivered_in_window as f64 / window_s,
        output_per_s: tally.received_in_window as f64 / window_s,
        last_receive_s: tally.last_receive_ns as f64 / 1e9,
        latency_ms: tally.latency_ms(),
        generator_lag_ms: outcome.max_lag_ns as f64 / 1e6,
        elapsed_s,
        sink_closed,
    })
}

/// The sink's message bodies; an `Err` (the last item) says why the subscription ended.
type Bodies = Pin<Box<dyn futures::Stream<Item = Result<Bytes, String>> + Send>>;

/// The end of a subscription that async-nats gives no reason for.
fn ended<T>() -> futures::stream::Once<futures::future::Ready<Result<T, String>>> {
    futures::stream::once(futures::future::ready(Err(
        "the subscription ended (connection closed)".to_owned(),
    )))
}

/// The sink's messages, and the JetStream push consumer to delete after the run, if any.
struct OpenSink {
    bodies: Bodies,
    push_consumer: Option<(jetstream::stream::Stream, String)>,
}

/// The push consumer's idle heartbeat. Besides showing the consumer is alive, each
/// heartbeat tick makes the server re-send a flow-control request still unanswered, so a
/// lost answer delays delivery by at most this long instead of stalling it.
const PUSH_HEARTBEAT: Duration = Duration::from_secs(2);
/// How long the server keeps the ephemeral push consumer once nobody listens on its deliver
/// subject (normally it is deleted at the end of the run).
const PUSH_INACTIVE: Duration = Duration::from_secs(10);

/// Subscribes (and makes sure the server has the subscription) before anything is sent.
async fn open_sink(url: &str, client: &Client, sink: &Sink) -> Result<OpenSink, LoadError> {
    let err = |what: &str, e: &dyn std::fmt::Display| LoadError::Sink(format!("{what}: {e}"));
    let light = |batches: mpsc::UnboundedReceiver<wire::Batch>| -> Bodies {
        let batches = futures::stream::unfold(batches, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        });
        Box::pin(batches.flat_map(|batch| match batch {
            Ok(bodies) => futures::stream::iter(bodies.into_iter().map(Ok)).left_stream(),
            Err(why) => futures::stream::once(futures::future::ready(Err(why))).right_stream(),
        }))
    };
    let bodies = |bodies: Bodies| OpenSink {
        bodies,
        push_consumer: None,
    };
    match sink {
        // The light reader (see `wire`) where the URL allows it: the sink shares the machine
        // with the router it measures.
        Sink::Core { subject } if wire::serves(url) => {
            let batches = wire::subscribe(url, subject)
                .await
                .map_err(|e| err(&format!("subscribe to {subject}"), &e))?;
            Ok(bodies(light(batches)))
        }
        Sink::Core { subject } => {
            let sub = client
                .subscribe(subject.clone())
                .await
                .map_err(|e| err(&format!("subscribe to {subject}"), &e))?;
            client.flush().await.map_err(|e| err("flush", &e))?;
            Ok(bodies(Box::pin(sub.map(|m| Ok(m.payload)).chain(ended()))))
        }
        // A push consumer rather than a pull consumer driven over the light connection: the
        // server then sends on its own and the reader only has to answer flow control, where
        // a pull consumer would need the reader to count each batch and request the next one
        // in time. It is created over async-nats (a single request); its messages are read
        // by the light reader, which subscribes to the deliver subject first: the consumer
        // starts at the stream's end when it is created (DeliverPolicy::New) and pushes at
        // once, so the subscription must already be in place. Ack-less, on one connection to
        // one server, with flow control so the server never outruns the reader (it would
        // otherwise cut it off as a slow consumer, losing messages): nothing is redelivered
        // and nothing skipped, which is what the ordered consumer's gap checks guard against.
        Sink::Stream { stream, filter } if wire::serves(url) => {
            let stream_handle = jetstream::new(client.clone())
                .get_stream(stream)
                .await
                .map_err(|e| err(&format!("stream {stream}"), &e))?;
            let inbox = client.new_inbox();
            let batches = wire::subscribe(url, &inbox)
                .await
                .map_err(|e| err(&format!("subscribe to {inbox}"), &e))?;
            let consumer = stream_handle
                .create_consumer(push::Config {
                    deliver_subject: inbox,
                    filter_subject: filter.clone().unwrap_or_default(),
                    deliver_policy: DeliverPolicy::New,
                    ack_policy: AckPolicy::None,
                    max_deliver: 1,
                    flow_control: true,
                    idle_heartbeat: PUSH_HEARTBEAT,
                    inactive_threshold: PUSH_INACTIVE,
                    // As the ordered consumer: its state need not survive a server restart.
                    memory_storage: true,
                    num_replicas: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&format!("push consumer on {stream}"), &e))?;
            let name = consumer.cached_info().name.clone();
            Ok(OpenSink {
                bodies: light(batches),
                push_consumer: Some((stream_handle, name)),
            })
        }
        Sink::Stream { stream, filter } => {
            let js = jetstream::new(client.clone());
            let stream_handle = js
                .get_stream(stream)
                .await
                .map_err(|e| err(&format!("stream {stream}"), &e))?;
            let consumer = stream_handle
                .create_consumer(pull::OrderedConfig {
                    filter_subject: filter.clone().unwrap_or_default(),
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&format!("ordered consumer on {stream}"), &e))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| err(&format!("ordered consumer on {stream}"), &e))?;
            // The ordered consumer recreates itself after a gap or missed heartbeats; the
            // errors it reports meanwhile are not messages, and loss shows in the counts.
            Ok(bodies(Box::pin(
                messages
                    .filter_map(|m| futures::future::ready(m.ok().map(|m| Ok(m.message.payload))))
                    .chain(ended()),
            )))
        }
    }
}

/// Counts until the generator is done and the output has settled, or until the
/// subscription ends early (then also says when and why).
async fn sink(
    mut messages: Bodies,
    mut tally: Tally,
    start: Instant,
    gen_end_ns: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    settle: Duration,
) -> (Tally, Option<String>) {
    let settle_ns = nanos(settle);
    let mut tick = tokio::time::interval(
        (settle / 4).clamp(Duration::from_millis(1), Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_rx_ns = 0;
    let mut closed = None;
    loop {
        tokio::select! {
            biased;
            _ = tick.tick() => {
                received.store(tally.received, Ordering::Relaxed);
                let end = gen_end_ns.load(Ordering::Relaxed);
                if end != u64::MAX {
                    let now = since(start);
                    let quiet = now.saturating_sub(last_rx_ns.max(end));
                    if quiet >= settle_ns || now.saturating_sub(end) >= settle_ns.saturating_mul(3) {
                        break;
                    }
                }
            }
            m = messages.next() => match m {
                Some(Ok(body)) => {
                    last_rx_ns = since(start);
                    tally.on_message(&body, last_rx_ns);
                }
                // The subscription ended: nothing more will come, and every event not yet
                // counted is lost to the sink, whatever the router did with it. The report
                // says so, or a harness would read the collapse as the router's.
                Some(Err(why)) => {
                    closed = Some(format!("{:.2} s into the run: {why}", since(start) as f64 / 1e9));
                    break;
                }
                None => {
                    closed = Some(format!("{:.2} s into the run", since(start) as f64 / 1e9));
                    break;
                }
            },
        }
    }
    received.store(tally.received, Ordering::Relaxed);
    (tally, closed)
}

enum Publisher {
    Core(Client),
    JetStream(jetstream::Context),
}

#[derive(Debug, Default)]
struct GenOutcome {
    sent: u64,
    publish_errors: u64,
    sent_in_window: u64,
    max_lag_ns: u64,
}

/// Publishes the planned events on schedule, then waits for outstanding PubAcks and flushes.
async fn generate(
    plan: Plan,
    publisher: Publisher,
    client: Client,
    start: Instant,
    sent: Arc<AtomicU64>,
) -> GenOutcome {
    let mut out = GenOutcome::default();
    let (ack_tx, acker) = match &publisher {
        Publisher::Core(_) => (None, None),
        Publisher::JetStream(_) => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(tokio::spawn(collect_acks(rx))))
        }
    };
    let max_len = plan
        .templates
        .iter()
        .map(|(s, b)| s.max_len() + b.max_len())
        .max()
        .unwrap_or(0);
    let mut arena = BytesMut::with_capacity(ARENA_BYTES.max(max_len));
    let mut num = itoa::Buffer::new();
    let mut next_template = 0;
    let mut seq = 0u64;
    'schedule: while seq < plan.total {
        let now = since(start);
        if now >= plan.stop_ns {
            break;
        }
        let due = ((now as f64 / plan.ns_per_event) as u64)
            .saturating_add(1)
            .min(plan.total);
        while seq < due {
            let t_ns = since(start);
            if t_ns >= plan.stop_ns {
                break 'schedule;
            }
            out.max_lag_ns = out
                .max_lag_ns
                .max(t_ns.saturating_sub(plan.scheduled_ns(seq)));
            let (subject_t, body_t) = &plan.templates[next_template];
            next_template = (next_template + 1) % plan.templates.len();
            if arena.capacity() < max_len {
                arena = BytesMut::with_capacity(ARENA_BYTES.max(max_len));
            }
            let values = Values {
                seq,
                ts: plan.base_ts_ms.wrapping_add(seq),
                t_ns,
            };
            let subject = match subject_t.fixed() {
                Some(s) => Subject::try_from(s.clone()),
                None => {
                    subject_t.render(&mut arena, &mut num, values);
                    Subject::try_from(arena.split().freeze())
                }
            };
            body_t.render(&mut arena, &mut num, values);
            let payload = arena.split().freeze();
            let ok = match (subject, &publisher) {
                // Templates are UTF-8 and placeholders render as ASCII, so this cannot fail.
                (Err(_), _) => false,
                (Ok(subject), Publisher::Core(c)) => c.publish(subject, payload).await.is_ok(),
                (Ok(subject), Publisher::JetStream(js)) => match js.publish(subject, payload).await
                {
                    Ok(ack) => ack_tx.as_ref().is_some_and(|tx| tx.send(ack).is_ok()),
                    Err(_) => false,
                },
            };
            if !ok {
                out.publish_errors += 1;
            }
            if t_ns >= plan.window_ns.0 && t_ns < plan.window_ns.1 {
                out.sent_in_window += 1;
            }
            seq += 1;
            sent.store(seq, Ordering::Relaxed);
        }
        if seq < plan.total {
            let next = start + Duration::from_nanos(plan.scheduled_ns(seq));
            if next > Instant::now() {
                tokio::time::sleep_until(next.into()).await;
            }
        }
    }
    out.sent = seq;
    drop(ack_tx);
    if let Some(acker) = acker {
        // A panicked acker leaves its PubAcks unaccounted; count them all as failed.
        out.publish_errors += acker.await.unwrap_or(seq);
    }
    // If this fails, whatever was still buffered may not have reached the server; the sink's
    // loss count shows it.
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    out
}

/// Awaits PubAcks as they come in; returns the number that failed or timed out.
async fn collect_acks(
    mut rx: mpsc::UnboundedReceiver<jetstream::context::PublishAckFuture>,
) -> u64 {
    let mut pending = FuturesUnordered::new();
    let mut errors = 0;
    let mut open = true;
    loop {
        tokio::select! {
            ack = rx.recv(), if open => match ack {
                Some(ack) => pending.push(ack.into_future()),
                None => open = false,
            },
            Some(result) = pending.next(), if !pending.is_empty() => {
                if result.is_err() {
                    errors += 1;
                }
            }
            else => break,
        }
    }
    errors
}
