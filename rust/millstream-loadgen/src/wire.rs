//! The counting sink's NATS connection: a plain-TCP subscriber that reads message bodies and
//! nothing else. It serves both sinks: a core subscription, and the deliver subject of the
//! JetStream sink's push consumer (whose flow-control requests it answers).
//!
//! Written by hand on purpose. async-nats turns every received header into a `HashMap`
//! entry with its own `String`s; with Millstream's ten CloudEvents headers that was about two
//! thirds of the load process's samples in a perf profile (70% on the JetStream path), CPU
//! taken from the same two cores the router under test needs (and the passthrough relay,
//! which sends no headers, did not pay it). The sink only needs each body, so this reader
//! skips the header block by its length. Framing, URLs and CONNECT come from
//! `millstream-natswire`, shared with the data plane's egress connection. URLs with TLS, or
//! anything else it cannot do, use async-nats.

use bytes::{Bytes, BytesMut};
use millstream_natswire::{connect_line, next_frame, target, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Whether the light reader can serve `url` (else the sink uses async-nats).
pub(crate) fn serves(url: &str) -> bool {
    target(url).is_some()
}

/// Connects, subscribes to `subject` and waits until the server has the subscription (its
/// PONG), then reads in a task: every read's bodies go to the returned channel as one batch.
/// Status messages (a push consumer's heartbeats and flow-control requests) are not bodies;
/// the flow-control requests among them are answered. When the connection ends, the last
/// item says why.
pub(crate) async fn subscribe(
    url: &str,
    subject: &str,
) -> Result<mpsc::UnboundedReceiver<Batch>, String> {
    let t = target(url).ok_or_else(|| format!("not a plain nats:// URL: {url}"))?;
    let mut stream = TcpStream::connect(&t.host)
        .await
        .map_err(|e| format!("connect to {}: {e}", t.host))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut connect = connect_line(&t, "millstream-loadgen-sink", false);
    connect.push_str(&format!("SUB {subject} 1\r\nPING\r\n"));
    stream
        .write_all(connect.as_bytes())
        .await
        .map_err(|e| format!("send CONNECT: {e}"))?;
    let mut buf = BytesMut::with_capacity(1 << 20);
    // INFO comes first, then the PONG; a -ERR before it (bad credentials, bad subject) is fatal.
    loop {
        match next_frame(&mut buf)? {
            Some(Frame::Err(e)) => return Err(format!("server refused the sink: {e}")),
            Some(Frame::Pong) => break,
            Some(_) => {}
            None => {
                if stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| format!("read: {e}"))?
                    == 0
                {
                    return Err("the server closed the connection".into());
                }
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // The sink's counts show whatever an early end loses, and its report says why the
        // connection ended (the channel's last item); the run goes on to its end.
        let why = read(stream, buf, &tx).await;
        let _ = tx.send(Err(why));
    });
    Ok(rx)
}

/// Reads bodies into `tx` until the connection ends; returns why it did.
async fn read(
    mut stream: TcpStream,
    mut buf: BytesMut,
    tx: &mpsc::UnboundedSender<Batch>,
) -> String {
    let mut bodies = Vec::new();
    let mut out = Vec::new();
    loop {
        loop {
            match next_frame(&mut buf) {
                Ok(Some(Frame::Msg {
                    reply,
                    headers,
                    payload,
                    ..
                })) => {
                    if is_status(&headers) {
                        if let Some(to) = flow_control_answer(reply.as_deref(), &headers) {
                            out.extend_from_slice(b"PUB ");
                            out.extend_from_slice(to);
                            out.extend_from_slice(b" 0\r\n\r\n");
                        }
                    } else {
                        bodies.push(payload);
                    }
                }
                Ok(Some(Frame::Ping)) => out.extend_from_slice(b"PONG\r\n"),
                Ok(Some(Frame::Pong | Frame::Other)) => {}
                Ok(Some(Frame::Err(e))) => return format!("the server sent -ERR {e}"),
                Err(e) => return format!("unreadable protocol: {e}"),
                Ok(None) => break,
            }
        }
        if !bodies.is_empty() && tx.send(Ok(std::mem::take(&mut bodies))).is_err() {
            return "the sink stopped reading".into();
        }
        // Flow control is answered as soon as the bytes are read, not once the tally has
        // counted them: what it protects against is the server's outbound buffer for this
        // connection filling up (a slow consumer, whose messages the server drops), and
        // the channel behind this reader is unbounded, like the core path's.
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                return format!("write: {e}");
            }
            out.clear();
        }
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(1 << 20);
        }
        match stream.read_buf(&mut buf).await {
            // nats-server closes a slow consumer's connection without a word (its outbound
            // buffer is what is full); its log names the reason.
            Ok(0) => return "the server closed the connection".into(),
            Err(e) => return format!("read: {e}"),
            Ok(_) => {}
        }
    }
}

/// One read's bodies, or why the connection ended (the last item).
pub(crate) type Batch = Result<Vec<Bytes>, String>;

/// Whether a message is one the server made up rather than one a client published: its
/// header block starts with a status code (`NATS/1.0 100 Idle Heartbeat`, `NATS/1.0 100
/// FlowControl Request`, `NATS/1.0 409 Consumer Deleted`) where a published one has a bare
/// `NATS/1.0`. It carries no body, so it is never counted.
fn is_status(headers: &[u8]) -> bool {
    headers
        .strip_prefix(b"NATS/1.0 ")
        .and_then(|rest| rest.first())
        .is_some_and(u8::is_ascii_digit)
}

/// The subject a status message asks to be answered on with an empty message, if any: a
/// flow-control request's reply subject, or the outstanding request a heartbeat names in
/// `Nats-Consumer-Stalled` (the server sends that when it has waited for an answer; answering
/// twice is harmless, as it ignores an answer that is not for its latest request).
fn flow_control_answer<'a>(reply: Option<&'a [u8]>, headers: &'a [u8]) -> Option<&'a [u8]> {
    if let Some(reply) = reply.filter(|r| !r.is_empty()) {
        return Some(reply);
    }
    headers.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(memchr::memchr(b':', line)?);
        name.eq_ignore_ascii_case(b"Nats-Consumer-Stalled")
            .then(|| value[1..].trim_ascii())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Reads from `conn` until what it has read ends with `end`.
    async fn read_until(conn: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        while !got.ends_with(end) {
            let n = conn.read_buf(&mut got).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        }
        got
    }

    /// A stand-in server delivers what a JetStream push consumer sends to its deliver subject:
    /// messages with and without headers, a flow-control request and an idle heartbeat that
    /// names a stalled request, then hangs up. The reader must hand out the two bodies only,
    /// answer both requests with an empty publish, and say how the connection ended.
    #[tokio::test]
    async fn answers_flow_control_and_hands_out_only_bodies() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("nats://{}", listener.local_addr().expect("addr"));
        let fc = "NATS/1.0 100 FlowControl Request\r\n\r\n";
        let hb = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 2\r\n\
                  Nats-Last-Stream: 9\r\nNats-Consumer-Stalled: $JS.FC.S.C.old1\r\n\r\n";
        let ce = "NATS/1.0\r\nCe-Id: 1\r\nCe-Type: x\r\n\r\n";
        let deliveries = format!(
            "HMSG _INBOX.d 1 $JS.ACK.S.C.1.8.1.0.0 {} {}\r\n{ce}one\r\n\
             HMSG _INBOX.d 1 $JS.FC.S.C.new2 {} {}\r\n{fc}\r\n\
             HMSG _INBOX.d 1 {} {}\r\n{hb}\r\n\
             MSG _INBOX.d 1 $JS.ACK.S.C.1.9.2.0.0 3\r\ntwo\r\nPING\r\n",
            ce.len(),
            ce.len() + 3,
            fc.len(),
            fc.len(),
            hb.len(),
            hb.len(),
        );
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.write_all(b"INFO {}\r\n").await.expect("write");
            let hello = read_until(&mut conn, b"PING\r\n").await;
            assert!(hello.ends_with(b"SUB _INBOX.d 1\r\nPING\r\n"));
            conn.write_all(b"PONG\r\n").await.expect("write");
            conn.write_all(deliveries.as_bytes()).await.expect("write");
            read_until(&mut conn, b"PONG\r\n").await
        });
        let mut rx = subscribe(&url, "_INBOX.d").await.expect("subscribe");
        let mut bodies = Vec::new();
        while bodies.len() < 2 {
            bodies.extend(rx.recv().await.expect("a batch").expect("bodies"));
        }
        let answers = server.await.expect("server");
        assert_eq!(bodies, vec![Bytes::from("one"), Bytes::from("two")]);
        assert_eq!(
            String::from_utf8_lossy(&answers),
            "PUB $JS.FC.S.C.new2 0\r\n\r\nPUB $JS.FC.S.C.old1 0\r\n\r\nPONG\r\n"
        );
        // nothing else is a body, and once the server has hung up the last item says so
        assert_eq!(
            rx.recv().await,
            Some(Err("the server closed the connection".to_owned()))
        );
        assert_eq!(rx.recv().await, None);
    }
}
