//! The counting sink's NATS connection: a plain-TCP subscriber that reads message bodies and
//! nothing else.
//!
//! Written by hand on purpose. async-nats turns every received header into a `HashMap`
//! entry with its own `String`s; with Millstream's ten CloudEvents headers that was about two
//! thirds of the load process's samples in a perf profile, CPU taken from the same two
//! cores the router under test needs (and the passthrough relay, which sends no headers, did
//! not pay it). The sink only needs each body, so this reader skips the header block by its
//! length. Framing, URLs and CONNECT come from `millstream-natswire`, shared with the data
//! plane's egress connection. URLs with TLS, or anything else it cannot do, use async-nats.

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
/// The channel ends when the connection does.
pub(crate) async fn subscribe(
    url: &str,
    subject: &str,
) -> Result<mpsc::UnboundedReceiver<Vec<Bytes>>, String> {
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
        let mut bodies = Vec::new();
        loop {
            loop {
                match next_frame(&mut buf) {
                    Ok(Some(Frame::Msg { payload, .. })) => bodies.push(payload),
                    Ok(Some(Frame::Ping)) => {
                        if stream.write_all(b"PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Frame::Pong | Frame::Other)) => {}
                    // The sink's counts show whatever this loses; the run goes on to its end.
                    Ok(Some(Frame::Err(_))) | Err(_) => return,
                    Ok(None) => break,
                }
            }
            if !bodies.is_empty() && tx.send(std::mem::take(&mut bodies)).is_err() {
                return;
            }
            if buf.capacity() - buf.len() < 64 * 1024 {
                buf.reserve(1 << 20);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    Ok(rx)
}
