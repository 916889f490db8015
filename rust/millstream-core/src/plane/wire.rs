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
//! or a server that demands TLS, keeps every output on async-nats. At-least-once outputs and
//! dead letters stay on async-nats's JetStream context, which matches PubAcks to publishes.
//!
//! Semantics match async-nats's `publish`: `Ok` means queued for the server. While the
//! connection is down the buffer keeps filling (up to `MAX_BUFFERED`, then publishes fail and
//! are counted) and is written after the reconnect, as async-nats's client buffer would be.
//! A frame cut by a dropped connection is lost: these outputs are best effort by definition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::metrics::Metrics;

/// Queued bytes beyond which publishes fail instead of buffering (an outage that outlasts
/// this is reported as failed outputs rather than growing memory without bound).
const MAX_BUFFERED: usize = 64 << 20;
/// Bytes handed to one `write_all`: large enough to amortise the syscall, small enough that
/// the buffer is recycled quickly.
const WRITE_CHUNK: usize = 256 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    #[error("payload of {size} bytes is over the server's max_payload of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{0} bytes are waiting for the NATS server; output dropped")]
    Backlog(usize),
}

/// Where to connect, from a URL the plain-TCP publisher can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub user: Option<(String, String)>,
    pub token: Option<String>,
}

/// `None` for URLs this connection does not serve (async-nats then carries the outputs).
pub(crate) fn target(url: &str) -> Option<Target> {
    let rest = match url.split_once("://") {
        Some(("nats", rest)) => rest,
        Some(_) => return None,
        None => url,
    };
    if rest.contains([',', '/', '?']) || rest.is_empty() {
        return None;
    }
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    let (user, token) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some((u.to_string(), p.to_string())), None),
            None => (None, Some(a.to_string())),
        },
    };
    let host = if host.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty()) {
        host.to_string()
    } else {
        format!("{}:4222", host.trim_end_matches(':'))
    };
    Some(Target { host, user, token })
}

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
        let inner = &*self.inner;
        let max = inner.max_payload.load(Ordering::Relaxed) as usize;
        let total = headers.len() + payload.len();
        if total > max {
            return Err(WireError::TooLarge { size: total, max });
        }
        let mut num = itoa::Buffer::new();
        {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.out.len() >= MAX_BUFFERED {
                return Err(WireError::Backlog(q.out.len()));
            }
            let start = q.out.len();
            let out = &mut q.out;
            if headers.is_empty() {
                out.extend_from_slice(b"PUB ");
                out.extend_from_slice(subject.as_bytes());
                out.extend_from_slice(b" ");
            } else {
                out.extend_from_slice(b"HPUB ");
                out.extend_from_slice(subject.as_bytes());
                out.extend_from_slice(b" ");
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
        }
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
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
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
    if let Some(max) = info["max_payload"].as_u64() {
        inner.max_payload.store(max, Ordering::Relaxed);
    }
    let mut connect = serde_json::json!({
        "verbose": false, "pedantic": false, "lang": "rust", "name": name,
        "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "headers": true,
        "no_responders": false, "echo": false,
    });
    if let Some((u, p)) = &target.user {
        connect["user"] = u.as_str().into();
        connect["pass"] = p.as_str().into();
    }
    if let Some(t) = &target.token {
        connect["auth_token"] = t.as_str().into();
    }
    conn.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .await
        .map_err(|e| format!("send CONNECT: {e}"))?;
    loop {
        while let Some(line) = take_line(&mut buf) {
            if line == "PONG" {
                return Ok(Some(conn));
            }
            if let Some(err) = line.strip_prefix("-ERR") {
                return Err(format!("server refused the connection:{err}"));
            }
        }
        read_some(&mut conn, &mut buf).await?;
    }
}

async fn read_some(conn: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
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

/// Write queued frames and read the server's PINGs, PONGs and errors until the connection
/// fails; returns why.
async fn serve(inner: &Inner, conn: &mut TcpStream, metrics: &Metrics) -> String {
    let (mut rd, mut wr) = conn.split();
    let mut inbox = BytesMut::with_capacity(4096);
    let mut spare = BytesMut::with_capacity(WRITE_CHUNK);
    loop {
        let chunk = {
            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.out.is_empty() {
                None
            } else {
                // Swap in an empty buffer so publishers never wait on the socket.
                std::mem::swap(&mut q.out, &mut spare);
                Some(std::mem::take(&mut spare))
            }
        };
        if let Some(mut chunk) = chunk {
            let n = chunk.len() as u64;
            if let Err(e) = wr.write_all(&chunk).await {
                // Part of this chunk may be lost (best effort); count it as handled so a
                // `flush` waits for the new connection's PONG, not for these bytes.
                inner.written.fetch_add(n, Ordering::AcqRel);
                return format!("write: {e}");
            }
            inner.written.fetch_add(n, Ordering::AcqRel);
            inner.progress.notify_waiters();
            chunk.clear();
            if chunk.capacity() <= 4 * WRITE_CHUNK {
                spare = chunk;
            } else {
                spare = BytesMut::with_capacity(WRITE_CHUNK);
            }
            continue;
        }
        tokio::select! {
            () = inner.wake.notified() => {}
            r = rd.read_buf(&mut inbox) => match r {
                Ok(0) => return "the server closed the connection".into(),
                Err(e) => return format!("read: {e}"),
                Ok(_) => {
                    while let Some(line) = take_line(&mut inbox) {
                        if line == "PING" {
                            let mut q = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
                            q.out.extend_from_slice(b"PONG\r\n");
                            q.queued += 6;
                        } else if line == "PONG" {
                            inner.pongs.fetch_add(1, Ordering::AcqRel);
                            inner.progress.notify_waiters();
                        } else if let Some(err) = line.strip_prefix("-ERR") {
                            // A permissions violation names one subject and the connection
                            // stays up; after any other error the server closes it, and the
                            // read above ends this loop.
                            metrics.error(format!("egress connection: server error:{err}"));
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_plain_urls_only() {
        assert_eq!(
            target("nats://127.0.0.1:4333"),
            Some(Target {
                host: "127.0.0.1:4333".into(),
                user: None,
                token: None
            })
        );
        assert_eq!(
            target("nats://u:p@h"),
            Some(Target {
                host: "h:4222".into(),
                user: Some(("u".into(), "p".into())),
                token: None
            })
        );
        assert_eq!(
            target("s3cr3t@localhost:4222").map(|t| t.token),
            Some(Some("s3cr3t".into()))
        );
        assert_eq!(target("tls://h:4222"), None);
        assert_eq!(target("nats://a:4222,nats://b:4222"), None);
        assert_eq!(target("ws://h:8080"), None);
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
