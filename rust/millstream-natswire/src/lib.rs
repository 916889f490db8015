//! The part of the NATS client protocol that Millstream speaks on its own connections: the
//! data plane's publish-only egress connection (`millstream-core`, `plane/wire.rs`), its
//! subscribe-only ingest connection for core inputs (`plane/ingest_wire.rs`) and the
//! benchmark's counting sink (`millstream-loadgen`). They exist because async-nats parses or
//! builds every header as a `HashMap` entry, and builds a `Message` per input (see those
//! modules for the measurements); no maintained crate offers the protocol's framing alone, so
//! this is written by hand and kept to what they need: URLs without TLS, CONNECT, and the
//! server's frames.

use bytes::{Buf, Bytes, BytesMut};

/// Where to connect, from a URL a plain-TCP connection can serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub user: Option<(String, String)>,
    pub token: Option<String>,
}

/// `nats://[user:pass@ | token@]host[:port]` (or without the scheme); `None` for what a
/// plain TCP connection cannot serve (TLS, websockets, several servers).
pub fn target(url: &str) -> Option<Target> {
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

/// The CONNECT line for `target`'s credentials: no verbose `+OK`s, headers understood.
/// `no_responders`: a request to a subject nobody serves gets a 503 status reply.
pub fn connect_line(target: &Target, name: &str, no_responders: bool) -> String {
    let mut connect = serde_json::json!({
        "verbose": false, "pedantic": false, "lang": "rust", "name": name,
        "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "headers": true,
        "no_responders": no_responders, "echo": false,
    });
    if let Some((u, p)) = &target.user {
        connect["user"] = u.as_str().into();
        connect["pass"] = p.as_str().into();
    }
    if let Some(t) = &target.token {
        connect["auth_token"] = t.as_str().into();
    }
    format!("CONNECT {connect}\r\n")
}

/// One server protocol frame.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// MSG or HMSG; `headers` is the whole header block (empty for MSG). `reply` is the
    /// subject to answer on, if the message has one (a JetStream flow-control request does).
    /// `sid` is the subscription's id from the SUB that asked for it.
    Msg {
        subject: Bytes,
        sid: u64,
        reply: Option<Bytes>,
        headers: Bytes,
        payload: Bytes,
    },
    Ping,
    Pong,
    Err(String),
    /// `+OK`, INFO: nothing to act on.
    Other,
}

/// Takes the next complete frame off the front of `buf`, or `None` until more bytes arrive.
/// Allocation-free for messages: the subject, headers and payload are slices of `buf`.
pub fn next_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    let bad = || format!("bad control line {:?}", String::from_utf8_lossy(line));
    // MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <hdr size> <total>
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut n = 0;
    for f in line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
    {
        if n == fields.len() {
            return Err(bad());
        }
        fields[n] = f;
        n += 1;
    }
    let number = |f: &[u8]| -> Result<usize, String> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let verb = fields[0];
    let (header_len, total) = if verb.eq_ignore_ascii_case(b"MSG") && (4..=5).contains(&n) {
        (0, number(fields[n - 1])?)
    } else if verb.eq_ignore_ascii_case(b"HMSG") && (5..=6).contains(&n) {
        let (h, t) = (number(fields[n - 2])?, number(fields[n - 1])?);
        if h > t {
            return Err(bad());
        }
        (h, t)
    } else if verb.eq_ignore_ascii_case(b"MSG") || verb.eq_ignore_ascii_case(b"HMSG") {
        return Err(bad());
    } else {
        let frame = if verb.eq_ignore_ascii_case(b"PING") {
            Frame::Ping
        } else if verb.eq_ignore_ascii_case(b"PONG") {
            Frame::Pong
        } else if verb.eq_ignore_ascii_case(b"-ERR") {
            Frame::Err(
                String::from_utf8_lossy(&line[verb.len()..])
                    .trim()
                    .to_string(),
            )
        } else {
            Frame::Other
        };
        buf.advance(eol + 2);
        return Ok(Some(frame));
    };
    let need = eol + 2 + total + 2;
    if buf.len() < need {
        buf.reserve(need - buf.len());
        return Ok(None);
    }
    let span = |f: &[u8]| {
        let at = f.as_ptr() as usize - line.as_ptr() as usize;
        at..at + f.len()
    };
    let sid = std::str::from_utf8(fields[2])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let subject_at = span(fields[1]);
    // With a reply subject (always the fourth field) MSG has 5 fields and HMSG 6.
    let has_reply = n == 5 + usize::from(verb.eq_ignore_ascii_case(b"HMSG"));
    let reply_at = has_reply.then(|| span(fields[3]));
    let control = buf.split_to(eol + 2).freeze();
    let subject = control.slice(subject_at);
    let reply = reply_at.map(|r| control.slice(r));
    let headers = buf.split_to(header_len).freeze();
    let payload = buf.split_to(total - header_len).freeze();
    buf.advance(2);
    Ok(Some(Frame::Msg {
        subject,
        sid,
        reply,
        headers,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(wire: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(f) = next_frame(&mut buf).expect("frame") {
            out.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    fn msg(subject: &str, reply: Option<&str>, headers: &str, payload: &str) -> Frame {
        sid_msg(subject, 1, reply, headers, payload)
    }

    fn sid_msg(
        subject: &str,
        sid: u64,
        reply: Option<&str>,
        headers: &str,
        payload: &str,
    ) -> Frame {
        Frame::Msg {
            subject: Bytes::copy_from_slice(subject.as_bytes()),
            sid,
            reply: reply.map(|r| Bytes::copy_from_slice(r.as_bytes())),
            headers: Bytes::copy_from_slice(headers.as_bytes()),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }
    }

    #[test]
    fn reads_msg_hmsg_and_control_frames() {
        let headers = "NATS/1.0\r\nCe-Id: 7\r\nCe-Type: x\r\n\r\n";
        let body = "{\"line\":\"L1_2\"}";
        let wire = format!(
            "INFO {{}}\r\nMSG a.b 1 5\r\nhello\r\nPING\r\nPONG\r\n\
             HMSG c.d 1 _INBOX.x.7 {} {}\r\n{headers}{body}\r\n-ERR 'Authorization Violation'\r\n",
            headers.len(),
            headers.len() + body.len()
        );
        assert_eq!(
            frames(wire.as_bytes()),
            vec![
                Frame::Other,
                msg("a.b", None, "", "hello"),
                Frame::Ping,
                Frame::Pong,
                msg("c.d", Some("_INBOX.x.7"), headers, body),
                Frame::Err("'Authorization Violation'".into()),
            ]
        );
    }

    #[test]
    fn waits_for_a_frame_split_across_reads() {
        let wire =
            b"MSG a 1 12\r\nhello\r\nworld\r\nHMSG b 1 r 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n";
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
                    msg("a", None, "", "hello\r\nworld"),
                    msg("b", Some("r"), "NATS/1.0 503\r\n\r\n", ""),
                    Frame::Pong
                ],
                "cut at {cut}"
            );
        }
    }

    /// A JetStream push consumer's flow-control request must be answered on its reply subject;
    /// its heartbeat, and MSG/HMSG without a reply, have none.
    #[test]
    fn reads_reply_subjects() {
        let fc = "NATS/1.0 100 FlowControl Request\r\n\r\n";
        let hb = "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n";
        let wire = format!(
            "MSG a 1 r.1 2\r\nhi\r\nMSG a 1 2\r\nhi\r\n\
             HMSG _INBOX.d 9 $JS.FC.S.C.ab1z {} {}\r\n{fc}\r\n\
             HMSG _INBOX.d 9 {} {}\r\n{hb}\r\n",
            fc.len(),
            fc.len(),
            hb.len(),
            hb.len()
        );
        assert_eq!(
            frames(wire.as_bytes()),
            vec![
                msg("a", Some("r.1"), "", "hi"),
                msg("a", None, "", "hi"),
                sid_msg("_INBOX.d", 9, Some("$JS.FC.S.C.ab1z"), fc, ""),
                sid_msg("_INBOX.d", 9, None, hb, ""),
            ]
        );
    }

    #[test]
    fn refuses_malformed_control_lines() {
        for bad in [
            &b"MSG a 1 x\r\n"[..],
            b"HMSG a 1 9 3\r\n",
            b"MSG a\r\n",
            b"HMSG a 1 2 3 4 5 6\r\n",
            b"MSG a x 2\r\nhi\r\n",
        ] {
            assert!(next_frame(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_urls_only() {
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
    fn connect_carries_credentials_as_json() {
        let t = target("nats://u\"x:p@h:1").expect("plain");
        let line = connect_line(&t, "n", true);
        let json: serde_json::Value =
            serde_json::from_str(line.trim_start_matches("CONNECT ").trim_end()).expect("json");
        assert_eq!(json["user"], "u\"x");
        assert_eq!(json["pass"], "p");
        assert_eq!(json["headers"], true);
        assert_eq!(json["no_responders"], true);
        assert!(line.ends_with("\r\n"));
    }
}
