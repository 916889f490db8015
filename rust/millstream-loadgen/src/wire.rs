//! The counting sink's NATS connection: a plain-TCP subscriber that reads message bodies and
//! nothing else.
//!
//! Written by hand on purpose. async-nats turns every received header into a `HashMap`
//! entry with its own `String`s; for Millstream's ten CloudEvents headers that was about 4 µs
//! per message on the benchmark VM, most of the load process's CPU, taken from the same two
//! cores the router under test needs (and the passthrough relay, which sends no headers, did
//! not pay it). The sink only needs each body, so this reader skips the header block by its
//! length. It speaks the small subscriber subset of the NATS client protocol: CONNECT, SUB,
//! PING/PONG, MSG and HMSG. URLs with TLS, or anything else it cannot do, use async-nats.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// `nats://[user:password@]host:port` (or bare `host:port`) split into what CONNECT needs;
/// `None` for what this reader does not handle (TLS, websockets, several servers).
pub(crate) fn plain_url(url: &str) -> Option<(String, Option<(String, String)>)> {
    let rest = match url.split_once("://") {
        Some(("nats", rest)) => rest,
        Some(_) => return None,
        None => url,
    };
    if rest.contains(',') || rest.contains('/') {
        return None;
    }
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    let user = match auth {
        None => None,
        Some(a) => {
            let (u, p) = a.split_once(':')?;
            Some((u.to_string(), p.to_string()))
        }
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:4222")
    };
    Some((host, user))
}

/// One protocol frame the sink cares about.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// A message's body (headers skipped).
    Body(Bytes),
    Ping,
    Pong,
    /// +OK, INFO: nothing to do.
    Other,
    Err(String),
}

/// Takes the next complete frame off the front of `buf`, or `None` until more bytes arrive.
pub(crate) fn next_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    let (verb, args) = match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[..0]),
    };
    // MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <hdr size> <total>
    let (header_len, total) = match verb {
        b"MSG" | b"msg" => (0, last_number(args, 1)?),
        b"HMSG" | b"hmsg" => {
            let header = last_number(args, 2)?;
            let total = last_number(args, 1)?;
            if header > total {
                return Err(format!(
                    "HMSG header size {header} is larger than its total {total}"
                ));
            }
            (header, total)
        }
        other => {
            let frame = match other {
                b"PING" | b"ping" => Frame::Ping,
                b"PONG" | b"pong" => Frame::Pong,
                b"-ERR" | b"-err" => Frame::Err(String::from_utf8_lossy(args).into_owned()),
                _ => Frame::Other,
            };
            buf.advance(eol + 2);
            return Ok(Some(frame));
        }
    };
    let need = eol + 2 + total + 2;
    if buf.len() < need {
        buf.reserve(need - buf.len());
        return Ok(None);
    }
    buf.advance(eol + 2 + header_len);
    let body = buf.split_to(total - header_len).freeze();
    buf.advance(2);
    Ok(Some(Frame::Body(body)))
}

/// The `from_end`-th space-separated field from the end of a control line, as a number.
fn last_number(args: &[u8], from_end: usize) -> Result<usize, String> {
    let field = args
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .rev()
        .nth(from_end - 1)
        .ok_or_else(|| format!("short control line {:?}", String::from_utf8_lossy(args)))?;
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad size in {:?}", String::from_utf8_lossy(args)))
}

/// Connects, subscribes to `subject` and waits until the server has the subscription (its
/// PONG), then reads in a task: every read's bodies go to the returned channel as one batch.
/// The channel ends when the connection does.
pub(crate) async fn subscribe(
    url: &str,
    subject: &str,
) -> Result<mpsc::UnboundedReceiver<Vec<Bytes>>, String> {
    let (host, auth) = plain_url(url).ok_or_else(|| format!("not a plain nats:// URL: {url}"))?;
    let mut stream = TcpStream::connect(&host)
        .await
        .map_err(|e| format!("connect to {host}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut connect = connect_line(auth.as_ref());
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
                    Ok(Some(Frame::Body(b))) => bodies.push(b),
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

/// CONNECT for a subscriber: no verbose +OKs, headers understood, the URL's credentials.
fn connect_line(auth: Option<&(String, String)>) -> String {
    let quote = |s: &str| {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let creds = auth
        .map(|(u, p)| format!(",\"user\":{},\"pass\":{}", quote(u), quote(p)))
        .unwrap_or_default();
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"millstream-loadgen-sink\",\
         \"lang\":\"rust\",\"version\":\"{}\",\"protocol\":1,\"headers\":true{creds}}}\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut buf: BytesMut) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = next_frame(&mut buf).expect("frame") {
            out.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn reads_bodies_of_msg_and_hmsg_and_skips_headers() {
        let headers = "NATS/1.0\r\nCe-Id: 7\r\nCe-Type: x\r\n\r\n";
        let body = "{\"line\":\"L1_2\"}";
        let wire = format!(
            "INFO {{}}\r\nMSG a.b 1 5\r\nhello\r\nPING\r\nPONG\r\nHMSG c.d 1 _INBOX.x {} {}\r\n{headers}{body}\r\n",
            headers.len(),
            headers.len() + body.len()
        );
        assert_eq!(
            frames(BytesMut::from(wire.as_bytes())),
            vec![
                Frame::Other,
                Frame::Body(Bytes::from_static(b"hello")),
                Frame::Ping,
                Frame::Pong,
                Frame::Body(Bytes::from(body)),
            ]
        );
    }

    #[test]
    fn waits_for_a_frame_split_across_reads() {
        let wire = b"MSG a 1 12\r\nhello\r\nworld\r\nMSG b 1 0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = next_frame(&mut buf).expect("frame") {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = next_frame(&mut buf).expect("frame") {
                got.push(f);
            }
            assert_eq!(
                got,
                vec![
                    Frame::Body(Bytes::from_static(b"hello\r\nworld")),
                    Frame::Body(Bytes::new())
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn refuses_malformed_sizes_and_passes_errors_on() {
        assert!(next_frame(&mut BytesMut::from(&b"MSG a 1 x\r\n"[..])).is_err());
        assert!(next_frame(&mut BytesMut::from(&b"HMSG a 1 9 3\r\n"[..])).is_err());
        assert_eq!(
            next_frame(&mut BytesMut::from(
                &b"-ERR 'Authorization Violation'\r\n"[..]
            ))
            .expect("frame"),
            Some(Frame::Err("'Authorization Violation'".into()))
        );
    }

    #[test]
    fn plain_urls_only() {
        assert_eq!(
            plain_url("nats://127.0.0.1:4333"),
            Some(("127.0.0.1:4333".into(), None))
        );
        assert_eq!(
            plain_url("nats://u:p@h"),
            Some(("h:4222".into(), Some(("u".into(), "p".into()))))
        );
        assert_eq!(plain_url("tls://h:4222"), None);
        assert_eq!(plain_url("nats://a:4222,nats://b:4222"), None);
        assert_eq!(plain_url("nats://token@h:4222"), None);
    }
}
