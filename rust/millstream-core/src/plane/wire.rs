//! The egress connection for best-effort outputs: a second NATS connection that only
//! publishes, writing each output as one pre-encoded `HPUB` frame.
//!
//! Written by hand on purpose (decision recorded in docs/design.md). async-nats takes headers
//! only as a `HeaderMap`, a `HashMap` of `Vec<String>`: every output cost a clone of the
//! route's ten-entry header template (about twenty allocations), SipHash for each insert, a
//! hop through the client's channel, a re-serialisation in its connection task and the frees.
//! Profiles put that at a quarter of the router's CPU at saturation, against a block of bytes
//! that differs per event in four values. No Rust client accepts raw header bytes, so egress
//! writes the frames itself: one memcpy per output into a shared buffer, written by one task.
//!
//! Scope: plain `nats://[user:pass@ | token@]host:port` URLs. A URL with TLS, several servers,
//! or a server that demands TLS, keeps every output on async-nats. Dead letters stay on
//! async-nats's JetStream context.
//!
//! Best effort (`publish`): `Ok` means queued for the server, as with async-nats's `publish`.
//! While the connection is down the buffer keeps filling (up to `MAX_BUFFERED`, then
//! publishes fail and are counted) and is written after the reconnect, as async-nats's client
//! buffer would be. A frame cut by a dropped connection is lost: best effort allows it.
//!
//! At least once (`publish_acked`): the frame carries a reply subject under this
//! connection's inbox (subscribed on every connect), and the returned `AckWait` resolves with
//! the stream's PubAck, its error, "no responders" (no stream takes the subject), a timeout,
//! or the loss of the connection: anything but a PubAck fails the output, and egress naks the
//! input for redelivery; the output's `Nats-Msg-Id` makes a republish of something already
//! stored a no-op. At most `publish_window` PubAcks are awaited at once, as with async-nats's
//! `max_ack_inflight`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use millstream_natswire::{connect_line, next_frame, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::metrics::Metrics;

/// Queued bytes beyond which publishes fail instead of buffering (an outage that outlasts
/// this is reported as failed outputs rather than growing memory without bound).
const MAX_BUFFERED: usize = 64 << 20;
/// Bytes handed to one `write_all`: large enough to amortise the syscall, small enough that
/// the buffer is recycled quickly.
const WRITE_CHUNK: usize = 256 << 10;
/// How long an at-least-once output waits for its PubAck (async-nats's default too).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error("payload of {size} bytes is over the server's max_payload of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0} bytes are waiting for the NATS server; output dropped")]
    Backlog(usize),
}

pub(crate) use millstream_natswire::{target, Target};

struct Queue {
    out: BytesMut,
    /// Frames dropped because a connection died mid-write are not counted here; this is
    /// what `flush` waits for: every byte queued before it was handed to the socket.
    queued: u64,
}

struct Inner {
    queue: Mutex<Queue>,
    /// Wakes the writer (`send_queued`, `flush`).
    wake: Notify,
    written: AtomicU64,
    pongs: AtomicU64,
    progress: Notify,
    max_payload: AtomicU64,
    /// `_INBOX.<unique>`: PubAcks come back on `<inbox>.<token>`.
    inbox: String,
    next_token: AtomicU64,
    acks: Mutex<hashbrown::HashMap<u64, oneshot::Sender<Result<(), String>>>>,
    window: Arc<Semaphore>,
}

/// The PubAck an at-least-once output waits for; holds its place in the window.
pub(crate) struct AckWait {
    rx: oneshot::Receiver<Result<(), String>>,
    /// From the publish, not from the await: a batch's PubAcks are awaited one after another,
    /// and a timeout counted from each await would add up.
    deadline: tokio::time::Instant,
    token: u64,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl AckWait {
    pub(crate) async fn wait(self) -> Result<(), String> {
        match tokio::time::timeout_at(self.deadline, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the egress connection dropped the PubAck".into()),
            Err(_) => {
                lock(&self.inner.acks).remove(&self.token);
                Err(format!("no PubAck within {} s", ACK_TIMEOUT.as_secs()))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle to the egress connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Wire {
    inner: Arc<Inner>,
}

impl Wire {
    /// Connects once, so that a bad address or refused credentials fail the start as they
    /// would with async-nats, then keeps the connection up in a task of the plane's runtime
    /// (it ends with the runtime). Returns `Ok(None)` when the server demands TLS.
    pub(crate) async fn connect(
        target: Target,
        name: &str,
        inbox: String,
        publish_window: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Wire>, String> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                out: BytesMut::with_capacity(WRITE_CHUNK),
                queued: 0,
            }),
            wake: Notify::new(),
            written: AtomicU64::new(0),
            pongs: AtomicU64::new(0),
            progress: Notify::new(),
            max_payload: AtomicU64::new(1 << 20),
            inbox,
            next_token: AtomicU64::new(0),
            acks: Mutex::new(hashbrown::HashMap::new()),
            window: Arc::new(Semaphore::new(publish_window.max(1))),
        });
        let connect = format!("{name}-egress");
        let Some(conn) = handshake(&target, &connect, &inner).await? else {
            return Ok(None);
        };
        metrics.egress.present.store(true, Ordering::Relaxed);
        metrics.egress.connected.store(true, Ordering::Relaxed);
        let wire = Wire { inner };
        let task = wire.clone();
        tokio::spawn(async move {
            task.run(conn, target, connect, metrics).await;
        });
        Ok(Some(wire))
    }

    /// Queue one message; `headers` is a whole header block (`NATS/1.0` line, header lines,
    /// blank line) or empty for none. Nothing is written until `send_queued`: egress queues a
    /// whole batch first, because waking the writer per message cost a cross-thread wake-up
    /// each (a tenth of the router's time in a profile) and wrote tiny chunks.
    pub(crate) fn publish(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), WireError> {
        self.enqueue(subject, None, headers, payload)
    }

    /// Queue a JetStream publish (the subject must be a stream's); the `AckWait` resolves
    /// with its PubAck. Waits while `publish_window` PubAcks are outstanding.
    pub(crate) async fn publish_acked(
        &self,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<AckWait, WireError> {
        let inner = &self.inner;
        let permit = match inner.window.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // The window is full: the PubAcks that free it may belong to frames still
                // queued in this batch, so send them before waiting.
                self.send_queued();
                inner
                    .window
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| WireError::Backlog(0))?
            }
        };
        let token = inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&inner.acks).insert(token, tx);
        let mut num = itoa::Buffer::new();
        let reply = [inner.inbox.as_str(), ".", num.format(token)].concat();
        if let Err(e) = self.enqueue(subject, Some(&reply), headers, payload) {
            lock(&inner.acks).remove(&token);
            return Err(e);
        }
        Ok(AckWait {
            rx,
            deadline: tokio::time::Instant::now() + ACK_TIMEOUT,
            token,
            inner: inner.clone(),
            _permit: permit,
        })
    }

    fn enqueue(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), WireError> {
        let inner = &*self.inner;
        let max = inner.max_payload.load(Ordering::Relaxed) as usize;
        let total = headers.len() + payload.len();
        if total > max {
            return Err(WireError::TooLarge { size: total, max });
        }
        let mut num = itoa::Buffer::new();
        let mut q = lock(&inner.queue);
        if q.out.len() >= MAX_BUFFERED {
            return Err(WireError::Backlog(q.out.len()));
        }
        let start = q.out.len();
        let out = &mut q.out;
        out.extend_from_slice(if headers.is_empty() {
            b"PUB "
        } else {
            b"HPUB "
        });
        out.extend_from_slice(subject.as_bytes());
        out.extend_from_slice(b" ");
        if let Some(r) = reply {
            out.extend_from_slice(r.as_bytes());
            out.extend_from_slice(b" ");
        }
        if !headers.is_empty() {
            out.extend_from_slice(num.format(headers.len()).as_bytes());
            out.extend_from_slice(b" ");
        }
        out.extend_from_slice(num.format(total).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        let n = (q.out.len() - start) as u64;
        q.queued += n;
        Ok(())
    }

    /// Hand what is queued to the writer.
    pub(crate) fn send_queued(&self) {
        self.inner.wake.notify_one();
    }

    /// Waits until everything queued so far has been written and the server has answered a
    /// PING sent after it, or `timeout` passes. Returns whether it got there.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let inner = &*self.inner;
        let deadline = tokio::time::Instant::now() + timeout;
        let (target, pongs) = {
            let mut q = lock(&inner.queue);
            q.out.extend_from_slice(b"PING\r\n");
            q.queued += 6;
            (q.queued, inner.pongs.load(Ordering::Acquire))
        };
        inner.wake.notify_one();
        loop {
            let progress = inner.progress.notified();
            if inner.written.load(Ordering::Acquire) >= target
                && inner.pongs.load(Ordering::Acquire) > pongs
            {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return false;
            }
        }
    }

    /// Keeps the connection up: write what is queued, answer PINGs, reconnect with backoff.
    async fn run(self, mut conn: TcpStream, target: Target, name: String, metrics: Arc<Metrics>) {
        let inner = &*self.inner;
        loop {
            let why = serve(inner, &mut conn, &metrics).await;
            metrics.egress.connected.store(false, Ordering::Relaxed);
            // Whatever was written may or may not be stored; its PubAck will not come. The
            // outputs fail, their inputs are naked and redelivered, and `Nats-Msg-Id` drops
            // a republish of what was stored.
            let lost: Vec<_> = lock(&inner.acks).drain().map(|(_, tx)| tx).collect();
            for tx in lost {
                let _ = tx.send(Err(format!("egress connection lost: {why}")));
            }
            metrics.egress.disconnects.fetch_add(1, Ordering::Relaxed);
            metrics.error(format!("egress connection to {} lost: {why}", target.host));
            let mut backoff = Duration::from_millis(50);
            conn = loop {
                tokio::time::sleep(backoff).await;
                match handshake(&target, &name, inner).await {
                    Ok(Some(c)) => break c,
                    Ok(None) => {
                        metrics.error("egress connection: the server now demands TLS".into());
                    }
                    Err(e) => metrics.error(format!("egress connection: {e}")),
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            };
            metrics.egress.connected.store(true, Ordering::Relaxed);
            metrics.egress.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connect, read INFO, send CONNECT and a PING, wait for the PONG. `None`: TLS required.
async fn handshake(
    target: &Target,
    name: &str,
    inner: &Inner,
) -> Result<Option<TcpStream>, String> {
    let Some((mut conn, info)) = open(target).await? else {
        return Ok(None);
    };
    if let Some(max) = info["max_payload"].as_u64() {
        inner.max_payload.store(max, Ordering::Relaxed);
    }
    let connect = connect_line(target, name, true);
    let inbox = &inner.inbox;
    conn.write_all(format!("{connect}SUB {inbox}.* 1\r\nPING\r\n").as_bytes())
        .await
        .map_err(|e| format!("send CONNECT: {e}"))?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match next_frame(&mut buf)? {
            Some(Frame::Pong) => return Ok(Some(conn)),
            Some(Frame::Err(e)) => return Err(format!("server refused the connection: {e}")),
            Some(_) => {}
            None => read_some(&mut conn, &mut buf).await?,
        }
    }
}

/// Connect and read the server's INFO (the server sends nothing else before CONNECT).
/// `None`: the server demands TLS, which these connections do not speak.
pub(crate) async fn open(
    target: &Target,
) -> Result<Option<(TcpStream, serde_json::Value)>, String> {
    let mut conn = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&target.host))
        .await
        .map_err(|_| format!("connect to {}: timed out", target.host))?
        .map_err(|e| format!("connect to {}: {e}", target.host))?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4096);
    let info = loop {
        if let Some(line) = take_line(&mut buf) {
            break line;
        }
        read_some(&mut conn, &mut buf).await?;
    };
    let Some(json) = info.strip_prefix("INFO ") else {
        return Err(format!("expected INFO from the server, got {info:?}"));
    };
    let info: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("server INFO: {e}"))?;
    if info["tls_required"].as_bool() == Some(true) {
        return Ok(None);
    }
    Ok(Some((conn, info)))
}

pub(crate) async fn read_some(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_buf(buf))
        .await
        .map_err(|_| "the server did not answer within 5 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(())
}

/// One protocol line (without CRLF) off the front of `buf`.
fn take_line(buf: &mut BytesMut) -> Option<String> {
    let eol = memchr::memmem::find(buf, b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
    buf.advance(eol + 2);
    Some(line)
}

/// Write queued frames, and read PubAcks, PINGs, PONGs and errors, until the connection fails;
/// returns why. Reading goes on while a write blocks, so PubAcks never back up in the server.
async fn serve(inner: &Inner, conn: &mut TcpStream, metrics: &Metrics) -> String {
    let (rd, wr) = conn.split();
    tokio::select! {
        why = write_loop(inner, wr) => why,
        why = read_loop(inner, rd, metrics) => why,
    }
}

async fn write_loop(inner: &Inner, mut wr: WriteHalf<'_>) -> String {
    let mut spare = BytesMut::with_capacity(WRITE_CHUNK);
    loop {
        let chunk = {
            let mut q = lock(&inner.queue);
            if q.out.is_empty() {
                None
            } else {
                // Swap in an empty buffer so publishers never wait on the socket.
                std::mem::swap(&mut q.out, &mut spare);
                Some(std::mem::take(&mut spare))
            }
        };
        let Some(mut chunk) = chunk else {
            inner.wake.notified().await;
            continue;
        };
        let n = chunk.len() as u64;
        if let Err(e) = wr.write_all(&chunk).await {
            // Part of this chunk may be lost; count it as handled so a `flush` waits for the
            // new connection's PONG, not for these bytes.
            inner.written.fetch_add(n, Ordering::AcqRel);
            return format!("write: {e}");
        }
        inner.written.fetch_add(n, Ordering::AcqRel);
        inner.progress.notify_waiters();
        chunk.clear();
        // A buffer that grew under load keeps its size (up to a bound): growing again copies
        // everything queued, which showed as a few % of the router at high rates.
        spare = if chunk.capacity() <= 16 * WRITE_CHUNK {
            chunk
        } else {
            BytesMut::with_capacity(WRITE_CHUNK)
        };
    }
}

async fn read_loop(inner: &Inner, mut rd: ReadHalf<'_>, metrics: &Metrics) -> String {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match next_frame(&mut buf) {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    let mut q = lock(&inner.queue);
                    q.out.extend_from_slice(b"PONG\r\n");
                    q.queued += 6;
                    drop(q);
                    inner.wake.notify_one();
                }
                Ok(Some(Frame::Pong)) => {
                    inner.pongs.fetch_add(1, Ordering::AcqRel);
                    inner.progress.notify_waiters();
                }
                Ok(Some(Frame::Msg {
                    subject,
                    headers,
                    payload,
                    ..
                })) => on_reply(inner, &subject, &headers, &payload),
                // A permissions violation names one subject and the connection stays up;
                // after any other error the server closes it, and the read below ends this.
                Ok(Some(Frame::Err(e))) => metrics.error(format!("egress connection: {e}")),
                Ok(Some(Frame::Other)) => {}
                Err(e) => return format!("protocol: {e}"),
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return "the server closed the connection".into(),
            Err(e) => return format!("read: {e}"),
            Ok(_) => {}
        }
    }
}

/// A message on the inbox: the PubAck (or error) for one at-least-once output.
fn on_reply(inner: &Inner, subject: &[u8], headers: &[u8], payload: &[u8]) {
    let Some(token) = std::str::from_utf8(subject)
        .ok()
        .and_then(|s| s.strip_prefix(inner.inbox.as_str()))
        .and_then(|t| t.strip_prefix('.'))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return;
    };
    // None: it timed out already, or belongs to a connection that was given up on.
    let Some(tx) = lock(&inner.acks).remove(&token) else {
        return;
    };
    let _ = tx.send(pub_ack(headers, payload));
}

/// What JetStream answered a publish: a PubAck (`{"stream":..,"seq":..}`), an error
/// (`{"error":{"code":..,"description":..}}`), or a 503 status when no stream takes the subject.
fn pub_ack(headers: &[u8], payload: &[u8]) -> Result<(), String> {
    let status = headers
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    if status.starts_with("NATS/1.0 503") {
        return Err("no stream found for this subject (no responders)".into());
    }
    if !status.is_empty() && status != "NATS/1.0" && payload.is_empty() {
        return Err(format!("JetStream answered {status:?}"));
    }
    // Read into the two fields that matter, not a generic value: one of these per output
    // (a map and a string per key showed in the router's profile on the JetStream path).
    // (serde would also read a struct from an array; JetStream answers with an object)
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Err(format!(
            "unreadable PubAck: not a JSON object: {}",
            excerpt(payload)
        ));
    }
    let reply: PubAckReply<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable PubAck: {e}"))?;
    match reply {
        PubAckReply {
            error: Some(err), ..
        } => Err(format!(
            "JetStream refused the publish: {}",
            err.description.as_deref().unwrap_or("unknown error")
        )),
        PubAckReply {
            stream: Some(_), ..
        } => Ok(()),
        _ => Err(format!("unexpected PubAck {}", excerpt(payload))),
    }
}

/// The start of a reply we could not use, for the error that reports it.
fn excerpt(payload: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&payload[..payload.len().min(200)])
}

#[derive(serde::Deserialize)]
struct PubAckReply<'a> {
    #[serde(default)]
    stream: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow)]
    error: Option<ApiError<'a>>,
}

#[derive(serde::Deserialize)]
struct ApiError<'a> {
    #[serde(default, borrow)]
    description: Option<std::borrow::Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pub_acks_errors_and_no_responders() {
        let wire = b"MSG _INBOX.x.7 1 29\r\n{\"stream\":\"MFG_OUT\",\"seq\":12}\r\nPING\r\nHMSG _INBOX.x.8 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
        let mut buf = BytesMut::from(&wire[..]);
        let Some(Frame::Msg {
            subject,
            headers,
            payload,
            ..
        }) = next_frame(&mut buf).expect("frame")
        else {
            panic!("expected a message");
        };
        assert_eq!(&subject[..], b"_INBOX.x.7");
        assert_eq!(pub_ack(&headers, &payload), Ok(()));
        assert_eq!(next_frame(&mut buf).expect("frame"), Some(Frame::Ping));
        let Some(Frame::Msg {
            headers, payload, ..
        }) = next_frame(&mut buf).expect("frame")
        else {
            panic!("expected a message");
        };
        assert!(pub_ack(&headers, &payload).is_err_and(|e| e.contains("no stream found")));
        assert!(buf.is_empty());
        let refused =
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}"#;
        assert!(pub_ack(b"", refused).is_err_and(|e| e.contains("maximum messages exceeded")));
        // a duplicate is a PubAck too (the output was stored before)
        let dup = br#"{"stream":"MFG_OUT","seq":12,"duplicate":true}"#;
        assert_eq!(pub_ack(b"", dup), Ok(()));
        assert!(pub_ack(b"", br#"{"seq":1}"#).is_err_and(|e| e.contains("unexpected PubAck")));
        assert!(pub_ack(b"", b"[1]").is_err_and(|e| e.contains("unreadable PubAck")));
    }

    #[test]
    fn lines_come_off_whole() {
        let mut b = BytesMut::from(&b"INFO {}\r\nPI"[..]);
        assert_eq!(take_line(&mut b).as_deref(), Some("INFO {}"));
        assert_eq!(take_line(&mut b), None);
        b.extend_from_slice(b"NG\r\n");
        assert_eq!(take_line(&mut b).as_deref(), Some("PING"));
    }
}
