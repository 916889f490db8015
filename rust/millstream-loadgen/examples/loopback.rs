//! Loopback benchmark of the load generator itself (no router): the generator publishes to
//! `loop.<n>` and the sink subscribes to `loop.>` on the same server.
//!
//! ```text
//! cargo run --release -p millstream-loadgen --example loopback -- nats://127.0.0.1:4222 200000 5
//! ```
//! Arguments: server URL, rate (events/s), duration (s); add `js` for JetStream in and out
//! (through a stream `LOOP` on `loop.>`, created if missing).

use std::time::Duration;

use millstream_loadgen::{run, LoadSpec, Publish, Sink};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let rate: f64 = args.get(1).map_or(Ok(100_000.0), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(5.0), |s| s.parse())?;
    let jetstream = args.get(3).is_some_and(|s| s == "js");
    if jetstream {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await?);
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "LOOP".into(),
                    subjects: vec!["loop.>".into()],
                    max_messages: 1_000_000,
                    ..Default::default()
                })
                .await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            })?;
    }
    let spec = LoadSpec {
        url,
        templates: (0..4)
            .map(|i| {
                (
                    format!("loop.{i}"),
                    format!(
                        r#"{{"ts":{{ts}},"machine":"M{i}","line":"L{{stamp}}","temp":21.5,"seq":{{seq}}}}"#
                    ),
                )
            })
            .collect(),
        base_ts_ms: 1_700_000_000_000,
        rate_per_s: rate,
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64(secs / 5.0),
        publish: if jetstream {
            Publish::JetStream { window: 4096 }
        } else {
            Publish::Core
        },
        sink: if jetstream {
            Sink::Stream {
                stream: "LOOP".into(),
                filter: None,
            }
        } else {
            Sink::Core {
                subject: "loop.>".into(),
            }
        },
        marker: r#""line":"L"#.into(),
        settle: Duration::from_secs(1),
    };
    let report = run(&spec, &|p| {
        eprintln!(
            "{:6.1}s sent {:>10} received {:>10}",
            p.elapsed_s, p.sent, p.received
        )
    })?;
    println!("{report:#?}");
    Ok(())
}
