//! A browser's requests to the status page without a browser: raw HTTP/1.1 with chosen headers
//! (cookies, Origin, the CSRF header), and an SSE reader for `/ui/events`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Reply {
    pub status: u16,
    /// Lower-case header names with their values, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One request; `headers` are sent as given (plus Host, Connection and Content-Length).
pub fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the coordinator");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        super::http::dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A logged-in page session: the cookie pair (`cortex_session=…`) and the CSRF token.
pub struct Login {
    pub cookie: String,
    pub csrf: String,
    pub reply: Reply,
}

/// `POST /ui/login` with `token`, as the page does (same-origin).
pub fn login(addr: &str, token: &str) -> Login {
    let origin = format!("http://{addr}");
    let body = serde_json::json!({ "token": token }).to_string();
    let reply = send(
        addr,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/json"), ("Origin", &origin)],
        Some(&body),
    );
    let cookie = reply
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    let csrf = if reply.status == 200 {
        reply.json()["csrf"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    Login { cookie, csrf, reply }
}

/// One Server-Sent Event.
#[derive(Debug)]
pub struct Sse {
    pub event: String,
    pub data: serde_json::Value,
}

/// An open `/ui/events` stream.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub fn open(addr: &str) -> Events {
        let mut s = TcpStream::connect(addr).expect("connect for events");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET /ui/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("send");
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        // The status line and headers.
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Events { reader }
    }

    /// The next event (chunk-size lines and keep-alive comments skipped), within `within`.
    pub fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = Instant::now() + within;
        let (mut event, mut data) = (String::new(), String::new());
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("reading events: {e}"),
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ") {
                data.push_str(v);
            } else if l.is_empty() && !event.is_empty() && !data.is_empty() {
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(Sse { event, data });
            }
        }
        None
    }

    /// Events until one satisfies `f` (panics after `within`).
    pub fn until(&mut self, within: Duration, what: &str, mut f: impl FnMut(&Sse) -> bool) -> Sse {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(e) = self.next(deadline.saturating_duration_since(Instant::now())) {
                if f(&e) {
                    return e;
                }
            }
        }
        panic!("no event with {what} within {within:?}");
    }
}
