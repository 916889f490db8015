//! The ingest connection for core inputs: a NATS connection that only subscribes, and hands
//! on each message as two slices of its read buffer (subject and body).
//!
//! Written by hand for the same reason as `wire`. A profile of the router at 150k telemetry
//! events/s put async-nats's connection task (protocol parsing, building a `Message` with its
//! owned fields and parsed headers, the hop through each subscriber's channel) at about 8% of
//! the router's CPU, and the task forwarding each subscription's messages into the lanes at
//! 4.5%. Here a message costs its frame parse and two `Bytes` slices, and the reader puts it
//! into its lane itself (`Deliver`, implemented by `ingest`): a hop through a forwarding task
//! is a task wake-up, often on the other core, for every read.
//!
//! A connection of its own rather than the egress connection's reader: the server keeps one
//! outbound buffer per connection, so inputs arriving faster than the router reads them would
//! queue ahead of egress's PubAcks (and a slow-consumer cut would drop both); egress's
//! reconnect fails every PubAck in flight, which an input hiccup should not cause; and a
//! reader that owns its socket writes its few control lines (SUB, UNSUB, PING, PONG) itself.
//!
//! Scope as for `wire`: plain `nats://[user:pass@ | token@]host:port` URLs. With TLS, several
//! servers, or a server that demands TLS, core inputs stay on async-nats subscriptions.
//!
//! The socket is never left unread because the lanes are full (nats-server cuts off a client
//! that does not keep up). A message that would have to wait for room (a full lane, and an
//! event that may not be shed) goes to its subscription's forwarding task (`Inbox`), which
//! waits; so do the subscription's later messages, until that task has caught up, so each
//! subscription's order is kept. That buffer is bounded, as async-nats has its subscriber
//! channel (`subscription_capacity`), and a message that finds it full is dropped and counted
//! as async-nats counts it, as a slow consumer (`stats()["nats"]["slow_consumer"]`).
//!
//! Subscriptions are sent again on every reconnect; the connection counts as up once the
//! server has answered the PING sent after them. On stop: UNSUB everything, PING, and keep
//! reading until its PONG; every message the server sent before it saw the UNSUBs comes
//! before that PONG, so nothing already on its way is left behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use millstream_natswire::{connect_line, next_frame, Frame, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::wire::{open, read_some};

/// Messages a subscription holds between the reader and the lanes: what the plane gave
/// async-nats as `subscription_capacity`.
pub(crate) const BUFFERED: usize = 1 << 16;
/// A server silent for this long is PINGed; silent for as long again, it is given up on
/// (async-nats pings every 60 s too). A connection that only reads would otherwise never
/// notice a server that vanished without closing it.
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// How long a stop waits for the PONG that follows the last message.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// The read buffer grows by this when less than `READ_ROOM` is left. Messages are slices
/// of it, so a block is freed once every message read into it has been processed.
const READ_BLOCK: usize = 1 << 20;
const READ_ROOM: usize = 64 << 10;

/// One core subscription: a subject (pattern) and, for scale-out, its queue group.
pub(crate) struct Subscription {
    pub subject: String,
    pub queue_group: Option<String>,
}

/// Where the reader hands each message first, from its own task.
pub(crate) trait Deliver: Send + 'static {
    /// A message as the subscription's forwarding task sends it on.
    type Item: Send + 'static;
    /// One message: its subject and body (after the header block, which ingest does not
    /// read); `received` is when the read that brought it returned.
    fn prepare(&mut self, subject: Bytes, payload: Bytes, received: Instant) -> Self::Item;
    /// Hand it on now, if that needs no waiting; else give it back for the forwarding task.
    fn try_deliver(&mut self, item: Self::Item) -> Option<Self::Item>;
}

/// A subscription's messages that had to wait, as its forwarding task takes them.
pub(crate) struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<Vec<T>>,
    pending: Arc<AtomicUsize>,
}

impl<T> Inbox<T> {
    /// The held messages of one read; `None` once the connection has stopped and all were
    /// taken.
    pub(crate) async fn recv(&mut self) -> Option<Vec<T>> {
        self.rx.recv().await
    }

    /// One message has reached its lane (or been shed): room for another in the buffer.
    /// Counted per message, after the lane took it, so the bound holds while the forwarding
    /// task waits for room in a lane with a batch in hand.
    pub(crate) fn done(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Slot<T> {
    tx: mpsc::UnboundedSender<Vec<T>>,
    /// Messages sent to the forwarding task and not yet `done`.
    pending: Arc<AtomicUsize>,
    /// This read's held messages, sent once the read's frames are parsed.
    batch: Vec<T>,
}

/// How a connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

struct Reader<D: Deliver> {
    target: Target,
    name: String,
    subs: Vec<Subscription>,
    deliver: D,
    slots: Vec<Slot<D::Item>>,
    capacity: usize,
    metrics: Arc<Metrics>,
    /// PINGs sent on this connection that the server has not answered yet.
    owed: usize,
    /// A `-ERR` while connecting: the server refused the connection (and closes it).
    refused: Option<String>,
}

/// Connects, subscribes to every subscription (sid = position + 1) and waits until the
/// server has them, then reads in a task until `stop`. Returns that task and one `Inbox` per
/// subscription, in order; `Ok(None)` when the server demands TLS. Messages go to `deliver`,
/// or to the inbox when it cannot take them now. `capacity` bounds each subscription's inbox
/// (`BUFFERED`).
#[allow(clippy::type_complexity)]
pub(crate) async fn connect<D: Deliver>(
    target: Target,
    name: &str,
    subs: Vec<Subscription>,
    deliver: D,
    capacity: usize,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Option<(JoinHandle<()>, Vec<Inbox<D::Item>>)>, String> {
    let mut inboxes = Vec::new();
    let slots = subs
        .iter()
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            let pending = Arc::new(AtomicUsize::new(0));
            inboxes.push(Inbox {
                rx,
                pending: pending.clone(),
            });
            Slot {
                tx,
                pending,
                batch: Vec::new(),
            }
        })
        .collect();
    let mut reader = Reader {
        target,
        name: format!("{name}-ingest"),
        subs,
        deliver,
        slots,
        capacity: capacity.max(1),
        metrics,
        owed: 0,
        refused: None,
    };
    let Some((conn, buf)) = reader.handshake().await? else {
        return Ok(None);
    };
    let m = &reader.metrics.ingest;
    m.present.store(true, Ordering::Relaxed);
    m.connected.store(true, Ordering::Relaxed);
    let task = tokio::spawn(reader.run(conn, buf, stop));
    Ok(Some((task, inboxes)))
}

impl<D: Deliver> Reader<D> {
    /// Connect, send CONNECT, the subscriptions and a PING, and read until its PONG (messages
    /// that arrive before it are kept). `None`: TLS required.
    async fn handshake(&mut self) -> Result<Option<(TcpStream, BytesMut)>, String> {
        let Some((mut conn, _info)) = open(&self.target).await? else {
            return Ok(None);
        };
        let mut hello = connect_line(&self.target, &self.name, false);
        let mut num = itoa::Buffer::new();
        for (i, s) in self.subs.iter().enumerate() {
            hello.push_str("SUB ");
            hello.push_str(&s.subject);
            if let Some(q) = &s.queue_group {
                hello.push(' ');
                hello.push_str(q);
            }
            hello.push(' ');
            hello.push_str(num.format(i + 1));
            hello.push_str("\r\n");
        }
        hello.push_str("PING\r\n");
        conn.write_all(hello.as_bytes())
            .await
            .map_err(|e| format!("send CONNECT: {e}"))?;
        self.owed = 1;
        self.refused = None;
        let mut buf = BytesMut::with_capacity(READ_BLOCK);
        let mut out = Vec::new();
        loop {
            self.frames(&mut buf, &mut out)?;
            self.send_batches();
            if let Some(e) = self.refused.take() {
                return Err(format!("server refused the connection: {e}"));
            }
            if !out.is_empty() {
                conn.write_all(&out)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                out.clear();
            }
            if self.owed == 0 {
                return Ok(Some((conn, buf)));
            }
            read_some(&mut conn, &mut buf).await?;
        }
    }

    /// Keeps the connection up until `stop`: read, reconnect with backoff.
    async fn run(mut self, mut conn: TcpStream, mut buf: BytesMut, stop: CancellationToken) {
        loop {
            let why = match self.serve(&mut conn, &mut buf, &stop).await {
                Ended::Stopped => return,
                Ended::Lost(why) => why,
            };
            let m = &self.metrics.ingest;
            m.connected.store(false, Ordering::Relaxed);
            m.disconnects.fetch_add(1, Ordering::Relaxed);
            self.metrics.error(format!(
                "ingest connection to {} lost: {why}",
                self.target.host
            ));
            let mut backoff = Duration::from_millis(50);
            (conn, buf) = loop {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                match self.handshake().await {
                    Ok(Some(c)) => break c,
                    Ok(None) => self
                        .metrics
                        .error("ingest connection: the server now demands TLS".into()),
                    Err(e) => self.metrics.error(format!("ingest connection: {e}")),
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            };
            let m = &self.metrics.ingest;
            m.connected.store(true, Ordering::Relaxed);
            m.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Read and hand on messages until the connection fails or `stop`.
    async fn serve(
        &mut self,
        conn: &mut TcpStream,
        buf: &mut BytesMut,
        stop: &CancellationToken,
    ) -> Ended {
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        let mut idle = tokio::time::interval(PING_INTERVAL);
        idle.reset();
        let mut heard = false;
        let mut out = Vec::new();
        loop {
            if let Err(e) = self.frames(buf, &mut out) {
                return Ended::Lost(format!("protocol: {e}"));
            }
            self.send_batches();
            if !out.is_empty() {
                if let Err(e) = conn.write_all(&out).await {
                    return Ended::Lost(format!("write: {e}"));
                }
                out.clear();
            }
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(READ_BLOCK);
            }
            tokio::select! {
                r = conn.read_buf(buf) => match r {
                    Ok(0) => return Ended::Lost("the server closed the connection".into()),
                    Err(e) => return Ended::Lost(format!("read: {e}")),
                    Ok(_) => heard = true,
                },
                _ = idle.tick() => {
                    if !heard {
                        if self.owed > 0 {
                            return Ended::Lost("no answer to a PING".into());
                        }
                        out.extend_from_slice(b"PING\r\n");
                        self.owed += 1;
                    }
                    heard = false;
                }
                () = &mut stopped => {
                    self.unsubscribe(conn, buf).await;
                    return Ended::Stopped;
                }
            }
        }
    }

    /// UNSUB everything and take what the server sent before it saw that, up to its PONG.
    async fn unsubscribe(&mut self, conn: &mut TcpStream, buf: &mut BytesMut) {
        let mut bye = String::new();
        let mut num = itoa::Buffer::new();
        for sid in 1..=self.subs.len() {
            bye.push_str("UNSUB ");
            bye.push_str(num.format(sid));
            bye.push_str("\r\n");
        }
        bye.push_str("PING\r\n");
        if conn.write_all(bye.as_bytes()).await.is_err() {
            return;
        }
        self.owed += 1;
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        let mut out = Vec::new();
        loop {
            let parsed = self.frames(buf, &mut out);
            self.send_batches();
            if parsed.is_err() || self.owed == 0 {
                return;
            }
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(READ_BLOCK);
            }
            match tokio::time::timeout_at(deadline, conn.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }

    /// Takes every complete frame off `buf`: messages delivered, or else into their
    /// subscription's batch (or dropped, when its inbox is full); PINGs answered into `out`,
    /// PONGs counted. The messages taken are counted in `received` once per call, not per
    /// message: that counter shares a cache line with egress's, bumped from another thread.
    fn frames(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> Result<(), String> {
        let mut taken = 0;
        let parsed = self.take_frames(buf, out, &mut taken);
        if taken > 0 {
            self.metrics.received.fetch_add(taken, Ordering::Relaxed);
        }
        parsed
    }

    fn take_frames(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        taken: &mut u64,
    ) -> Result<(), String> {
        let mut received = None;
        while let Some(frame) = next_frame(buf)? {
            match frame {
                Frame::Msg {
                    subject,
                    sid,
                    payload,
                    ..
                } => {
                    // sid 0 or past the end: not one of ours (none is ever sent)
                    let Some(slot) = usize::try_from(sid)
                        .ok()
                        .and_then(|s| s.checked_sub(1))
                        .and_then(|i| self.slots.get_mut(i))
                    else {
                        continue;
                    };
                    let pending = slot.pending.load(Ordering::Relaxed);
                    if pending + slot.batch.len() >= self.capacity {
                        self.metrics.slow_consumer(1);
                        continue;
                    }
                    *taken += 1;
                    let received = *received.get_or_insert_with(Instant::now);
                    let item = self.deliver.prepare(subject, payload, received);
                    // Behind any message of this subscription still held, to keep its order.
                    let held = if pending == 0 && slot.batch.is_empty() {
                        self.deliver.try_deliver(item)
                    } else {
                        Some(item)
                    };
                    slot.batch.extend(held);
                }
                Frame::Ping => out.extend_from_slice(b"PONG\r\n"),
                Frame::Pong => self.owed = self.owed.saturating_sub(1),
                // A permissions violation names one subject and the connection stays up; any
                // other error closes it, and the read that follows ends this connection.
                Frame::Err(e) => {
                    self.metrics.error(format!("ingest connection: {e}"));
                    if self.owed > 0 && !e.contains("Permissions Violation") {
                        self.refused = Some(e);
                    }
                }
                Frame::Other => {}
            }
        }
        Ok(())
    }

    /// Hand each subscription's batch to its forwarding task.
    fn send_batches(&mut self) {
        for slot in &mut self.slots {
            if slot.batch.is_empty() {
                continue;
            }
            let n = slot.batch.len();
            slot.pending.fetch_add(n, Ordering::Relaxed);
            // The next read is likely the size of this one: no regrowing from empty.
            let batch = std::mem::replace(&mut slot.batch, Vec::with_capacity(n));
            // Fails only when the forwarding task has ended (the plane is stopping).
            let _ = slot.tx.send(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millstream_natswire::target;
    use tokio::net::TcpListener;

    /// Reads from `conn` until what it has read ends with `end`.
    async fn read_until(conn: &mut TcpStream, end: &[u8]) -> String {
        let mut got = Vec::new();
        while !got.ends_with(end) {
            let n = conn.read_buf(&mut got).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        }
        String::from_utf8(got).expect("utf-8")
    }

    /// A stand-in server's side of a connect: INFO, the client's CONNECT, SUBs and PING, PONG.
    /// Returns what the client sent.
    async fn accept(listener: &TcpListener) -> (TcpStream, String) {
        let (mut conn, _) = listener.accept().await.expect("accept");
        conn.write_all(b"INFO {\"max_payload\":1048576}\r\n")
            .await
            .expect("write");
        let hello = read_until(&mut conn, b"PING\r\n").await;
        conn.write_all(b"PONG\r\n").await.expect("write");
        (conn, hello)
    }

    fn subs() -> Vec<Subscription> {
        vec![
            Subscription {
                subject: "mes.*.telemetry".into(),
                queue_group: None,
            },
            Subscription {
                subject: "odoo.>".into(),
                queue_group: Some("millstream".into()),
            },
        ]
    }

    type Raw = (Bytes, Bytes);

    /// Takes nothing itself, as when every lane is full: each message goes to its inbox.
    struct Hold;

    impl Deliver for Hold {
        type Item = Raw;
        fn prepare(&mut self, subject: Bytes, payload: Bytes, _: Instant) -> Raw {
            (subject, payload)
        }
        fn try_deliver(&mut self, item: Raw) -> Option<Raw> {
            Some(item)
        }
    }

    async fn start(
        listener: &TcpListener,
        capacity: usize,
        metrics: &Arc<Metrics>,
        stop: &CancellationToken,
    ) -> (JoinHandle<()>, Vec<Inbox<Raw>>) {
        start_with(Hold, listener, capacity, metrics, stop).await
    }

    async fn start_with<D: Deliver>(
        deliver: D,
        listener: &TcpListener,
        capacity: usize,
        metrics: &Arc<Metrics>,
        stop: &CancellationToken,
    ) -> (JoinHandle<()>, Vec<Inbox<D::Item>>) {
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        connect(
            target(&url).expect("plain URL"),
            "ms",
            subs(),
            deliver,
            capacity,
            metrics.clone(),
            stop.clone(),
        )
        .await
        .expect("connect")
        .expect("no TLS")
    }

    async fn bodies(inbox: &mut Inbox<Raw>, n: usize) -> Vec<(String, String)> {
        let mut got = Vec::new();
        while got.len() < n {
            for (s, p) in inbox.recv().await.expect("a batch") {
                got.push((
                    String::from_utf8_lossy(&s).into_owned(),
                    String::from_utf8_lossy(&p).into_owned(),
                ));
            }
        }
        got
    }

    fn pair(s: &str, p: &str) -> (String, String) {
        (s.to_string(), p.to_string())
    }

    /// Both subscriptions (one in a queue group) are sent before the PING that `connect`
    /// waits for; MSG and HMSG bodies reach their subscription's inbox by sid, without the
    /// header block; the server's PING is answered.
    #[tokio::test]
    async fn subscribes_and_hands_on_msg_and_hmsg_bodies_by_sid() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let server = async {
            let (mut conn, hello) = accept(&listener).await;
            let ce = "NATS/1.0\r\nCe-Id: 1\r\n\r\n";
            let wire = format!(
                "MSG mes.a.telemetry 1 5\r\nhello\r\nHMSG odoo.sale 2 {} {}\r\n{ce}{{}}\r\n\
                 MSG odoo.x 7 1\r\n?\r\nPING\r\n",
                ce.len(),
                ce.len() + 2
            );
            conn.write_all(wire.as_bytes()).await.expect("write");
            read_until(&mut conn, b"PONG\r\n").await;
            (conn, hello)
        };
        let ((_conn, hello), (task, mut inboxes)) =
            tokio::join!(server, start(&listener, 8, &metrics, &stop));
        assert!(hello.starts_with("CONNECT {"), "{hello}");
        assert!(hello.contains("\"name\":\"ms-ingest\""), "{hello}");
        assert!(
            hello.ends_with("SUB mes.*.telemetry 1\r\nSUB odoo.> millstream 2\r\nPING\r\n"),
            "{hello}"
        );
        assert_eq!(
            bodies(&mut inboxes[0], 1).await,
            vec![pair("mes.a.telemetry", "hello")]
        );
        assert_eq!(
            bodies(&mut inboxes[1], 1).await,
            vec![pair("odoo.sale", "{}")]
        );
        assert!(metrics.ingest.connected.load(Ordering::Relaxed));
        // the two messages of ours are counted; sid 7's is not
        assert_eq!(metrics.received.load(Ordering::Relaxed), 2);
        stop.cancel();
        task.abort();
    }

    /// A subscription whose forwarding task has not taken its messages holds `capacity` of
    /// them; the rest are dropped and counted as a slow consumer, and the socket is still read
    /// (the PING after them is answered). Room made by `done` is used again.
    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_instead_of_blocking_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let server = async {
            let (mut conn, _) = accept(&listener).await;
            let mut wire = String::new();
            for i in 0..5 {
                wire.push_str(&format!("MSG mes.a.telemetry 1 1\r\n{i}\r\n"));
            }
            conn.write_all(format!("{wire}PING\r\n").as_bytes())
                .await
                .expect("write");
            read_until(&mut conn, b"PONG\r\n").await;
            conn
        };
        let (mut conn, (task, mut inboxes)) =
            tokio::join!(server, start(&listener, 3, &metrics, &stop));
        let slow = |m: &Metrics| m.snapshot(&Default::default())["nats"]["slow_consumer"].clone();
        assert_eq!(slow(&metrics), 2);
        let got = bodies(&mut inboxes[0], 3).await;
        assert_eq!(
            got.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        // the forwarding task has put two of them into their lanes
        inboxes[0].done();
        inboxes[0].done();
        let wire = "MSG mes.a.telemetry 1 1\r\n5\r\nMSG mes.a.telemetry 1 1\r\n6\r\n\
                    MSG mes.a.telemetry 1 1\r\n7\r\nPING\r\n";
        conn.write_all(wire.as_bytes()).await.expect("write");
        read_until(&mut conn, b"PONG\r\n").await;
        assert_eq!(slow(&metrics), 3);
        let got = bodies(&mut inboxes[0], 2).await;
        assert_eq!(
            got.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
            ["5", "6"]
        );
        stop.cancel();
        task.abort();
    }

    /// Takes the bodies it is given into `taken` while `open`; a closed one gives them back.
    struct Gate {
        open: Arc<std::sync::atomic::AtomicBool>,
        taken: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Deliver for Gate {
        type Item = String;
        fn prepare(&mut self, _: Bytes, payload: Bytes, _: Instant) -> String {
            String::from_utf8_lossy(&payload).into_owned()
        }
        fn try_deliver(&mut self, body: String) -> Option<String> {
            if !self.open.load(Ordering::Relaxed) {
                return Some(body);
            }
            self.taken.lock().expect("lock").push(body);
            None
        }
    }

    /// Sends MSGs with these bodies (sid 2 for those starting with "o", else sid 1), then a
    /// PING, and waits for its PONG: the reader has handled them all by then.
    async fn send(conn: &mut TcpStream, bodies: &str) {
        let mut wire = String::new();
        for b in bodies.split(' ') {
            let sid = if b.starts_with('o') { 2 } else { 1 };
            wire.push_str(&format!("MSG s {sid} {}\r\n{b}\r\n", b.len()));
        }
        wire.push_str("PING\r\n");
        conn.write_all(wire.as_bytes()).await.expect("write");
        read_until(conn, b"PONG\r\n").await;
    }

    /// Messages go straight to `Deliver` while it takes them. Once one had to be held, the
    /// subscription's later ones are held behind it, even when `Deliver` would take them,
    /// until the forwarding task has passed on every held one: its order is kept. Another
    /// subscription is not held up.
    #[tokio::test]
    async fn a_held_message_holds_its_subscriptions_later_ones_until_forwarded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Gate {
            open: open.clone(),
            taken: taken.clone(),
        };
        let (mut conn, (task, mut inboxes)) = tokio::join!(
            async { accept(&listener).await.0 },
            start_with(gate, &listener, 8, &metrics, &stop)
        );
        send(&mut conn, "1 2").await;
        assert_eq!(*taken.lock().expect("lock"), ["1", "2"]);
        open.store(false, Ordering::Relaxed);
        send(&mut conn, "3").await;
        open.store(true, Ordering::Relaxed);
        // 4 is held behind 3; the other subscription's o1 is not
        send(&mut conn, "4 o1").await;
        assert_eq!(*taken.lock().expect("lock"), ["1", "2", "o1"]);
        assert_eq!(inboxes[0].recv().await.expect("held"), ["3"]);
        assert_eq!(inboxes[0].recv().await.expect("held"), ["4"]);
        // still held while 3 and 4 are not passed on
        inboxes[0].done();
        send(&mut conn, "5").await;
        assert_eq!(inboxes[0].recv().await.expect("held"), ["5"]);
        inboxes[0].done();
        inboxes[0].done();
        send(&mut conn, "6").await;
        assert_eq!(*taken.lock().expect("lock"), ["1", "2", "o1", "6"]);
        stop.cancel();
        task.abort();
    }

    /// On stop every subscription is unsubscribed, and what the server sent before it saw
    /// that (everything up to the PONG) is still handed on; then the inboxes end.
    #[tokio::test]
    async fn stop_unsubscribes_and_takes_what_came_before_the_pong() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let (mut conn, (task, mut inboxes)) = tokio::join!(
            async { accept(&listener).await.0 },
            start(&listener, 8, &metrics, &stop)
        );
        stop.cancel();
        let bye = read_until(&mut conn, b"PING\r\n").await;
        assert_eq!(bye, "UNSUB 1\r\nUNSUB 2\r\nPING\r\n");
        conn.write_all(b"MSG odoo.late 2 4\r\nlate\r\nPONG\r\n")
            .await
            .expect("write");
        task.await.expect("the reader ends after the PONG");
        assert_eq!(
            bodies(&mut inboxes[1], 1).await,
            vec![pair("odoo.late", "late")]
        );
        assert!(inboxes[1].recv().await.is_none());
        assert!(inboxes[0].recv().await.is_none());
    }

    /// A lost connection is reconnected and every subscription sent again; messages on the
    /// new connection arrive; the metrics count one disconnect and one reconnect.
    #[tokio::test]
    async fn reconnects_and_subscribes_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let (first, (task, mut inboxes)) = tokio::join!(
            async { accept(&listener).await.0 },
            start(&listener, 8, &metrics, &stop)
        );
        drop(first);
        let (mut conn, hello) = accept(&listener).await;
        assert!(
            hello.ends_with("SUB mes.*.telemetry 1\r\nSUB odoo.> millstream 2\r\nPING\r\n"),
            "{hello}"
        );
        conn.write_all(b"MSG mes.b.telemetry 1 5\r\nagain\r\n")
            .await
            .expect("write");
        assert_eq!(
            bodies(&mut inboxes[0], 1).await,
            vec![pair("mes.b.telemetry", "again")]
        );
        let m = &metrics.ingest;
        // counted once the handshake is over, which may be after the message was handed on
        while m.reconnects.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(m.disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(m.reconnects.load(Ordering::Relaxed), 1);
        assert!(m.connected.load(Ordering::Relaxed));
        stop.cancel();
        task.abort();
    }

    /// An error before the PONG (bad credentials) fails the connect, as async-nats's would.
    #[tokio::test]
    async fn a_refused_connection_fails_the_start() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let server = async {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.write_all(b"INFO {}\r\n").await.expect("write");
            read_until(&mut conn, b"PING\r\n").await;
            conn.write_all(b"-ERR 'Authorization Violation'\r\n")
                .await
                .expect("write");
            conn
        };
        let connecting = connect(
            target(&url).expect("plain URL"),
            "ms",
            subs(),
            Hold,
            8,
            Arc::new(Metrics::default()),
            CancellationToken::new(),
        );
        let (_conn, result) = tokio::join!(server, connecting);
        let Err(e) = result else { panic!("connected") };
        assert!(e.contains("Authorization Violation"), "{e}");
    }
}
