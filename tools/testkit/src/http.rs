//! The one HTTP/1.1 client of the tests, benchmarks and tools, and a load generator built on it.
//!
//! It keeps connections alive when the server allows it (as Prometheus does) and reconnects when
//! the server closes them (nvitop-exporter's WSGI server answers HTTP/1.0 and closes); the connect
//! time is then part of the measured latency, as it is for Prometheus. It asks for the plain text format
//! without compression (unless told `accept_encoding`), so every exporter sends the same kind of body. Every load loop is bounded
//! by a request count and a deadline. Plain HTTP on loopback only: TLS tests use their own client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// What Prometheus asks for when it wants the plain text format without compression.
pub const EXPOSITION: &str = "text/plain;version=0.0.4";

/// One response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A client connection that is re-opened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    request: Vec<u8>,
    timeout: Duration,
    retry_stale: bool,
    accept: &'static str,
    accept_encoding: Option<&'static str>,
    authorization: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            conn: None,
            request: Vec::with_capacity(256),
            timeout: IO_TIMEOUT,
            retry_stale: true,
            accept: EXPOSITION,
            accept_encoding: None,
            authorization: None,
        }
    }

    /// Sends this `Authorization` header value with every request.
    pub fn authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    /// The `Accept` header (the plain text exposition format unless set).
    pub fn accept(mut self, accept: &'static str) -> Self {
        self.accept = accept;
        self
    }

    /// Sends `Accept-Encoding: value` (none unless set); the body is then read as it comes.
    pub fn accept_encoding(mut self, value: &'static str) -> Self {
        self.accept_encoding = Some(value);
        self
    }

    /// Connect, read and write timeout (30 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Counts a kept-alive connection that the server closed as a failure instead of retrying the
    /// request once on a fresh connection (a soak must see every dropped connection).
    pub fn strict(mut self) -> Self {
        self.retry_stale = false;
        self
    }

    /// Sends `GET path` and reads the whole response into `body` (cleared first); the status.
    pub fn get_into(&mut self, path: &str, body: &mut Vec<u8>) -> io::Result<u16> {
        self.request.clear();
        write!(
            self.request,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: vram-testkit\r\nAccept: {}\r\n",
            self.addr, self.accept
        )?;
        if let Some(encoding) = self.accept_encoding {
            write!(self.request, "Accept-Encoding: {encoding}\r\n")?;
        }
        if let Some(auth) = &self.authorization {
            write!(self.request, "Authorization: {auth}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        // A kept-alive connection the server closed meanwhile fails on first use: retry once fresh.
        let reused = self.conn.is_some();
        match self.exchange(body) {
            Err(_) if reused && self.retry_stale => {
                self.conn = None;
                self.exchange(body)
            }
            r => r,
        }
    }

    /// Sends `GET path`: status and body.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        let mut body = Vec::new();
        let status = self.get_into(path, &mut body)?;
        Ok(Response { status, body })
    }

    fn exchange(&mut self, body: &mut Vec<u8>) -> io::Result<u16> {
        body.clear();
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        }
        let result = {
            let conn = self.conn.as_mut().expect("connected above");
            conn.get_mut().write_all(&self.request)?;
            read_response(conn, body)
        };
        match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.conn = None;
                }
                Ok(status)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// One `GET` of an `http://host:port/path` URL on a fresh connection, accepting any media type:
/// status and body as text.
pub fn get_url(url: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad(format!("not an http:// URL: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| bad(format!("{host} has no address")))?;
    let r = Client::new(addr).timeout(timeout).accept("*/*").get(path)?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// Reads one response; returns (status, whether the connection stays open).
fn read_response(r: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("").to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in headers".into()));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("bad length {value}")))?,
                )
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(body)?;
    } else {
        r.read_to_end(body)?;
        keep_alive = false;
    }
    Ok((status, keep_alive))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Latency of every successful (200) request, in microseconds.
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn requests(&self) -> u64 {
        self.latencies_us.len() as u64 + self.errors
    }
}

/// `concurrency` scrapers, each sending one request after the other on its own connection, until
/// `max_requests` were sent in total or `max_time` has passed.
pub fn load(
    addr: SocketAddr,
    path: &str,
    concurrency: usize,
    max_requests: u64,
    max_time: Duration,
) -> LoadResult {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max_time;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let issued = issued.clone();
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut body = Vec::new();
                let mut out = LoadResult::default();
                while Instant::now() < deadline
                    && issued.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    let t = Instant::now();
                    match client.get_into(&path, &mut body) {
                        Ok(200) => out.latencies_us.push(t.elapsed().as_micros() as u64),
                        Ok(_) | Err(_) => out.errors += 1,
                    }
                }
                out
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for w in workers {
        let r = w.join().expect("load worker panicked");
        total.latencies_us.extend(r.latencies_us);
        total.errors += r.errors;
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves canned responses, one connection each, on a loopback port; returns its address.
    fn canned(responses: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(r.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_bodies() {
        let addr = canned(vec![
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nbusy",
        ]);
        let mut c = Client::new(addr);
        let r = c.get("/metrics").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        // HTTP/1.0 closes: the client must reconnect for the next request.
        let r = c.get("/metrics").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        // The chunked reply was HTTP/1.1 and kept alive, but the test server moved on: the client
        // retries once on a fresh connection.
        let r = c.get("/metrics").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"busy"[..]));
    }

    #[test]
    fn a_strict_client_reports_a_closed_kept_alive_connection() {
        let addr = canned(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]);
        let mut c = Client::new(addr).strict();
        assert_eq!(c.get("/").unwrap().status, 200);
        // The server closed the kept-alive connection: an error, then a fresh connection works.
        assert!(c.get("/").is_err());
        assert_eq!(c.get("/").unwrap().status, 200);
    }

    #[test]
    fn urls_are_fetched_and_requests_name_the_path() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let (status, body) = get_url(&format!("http://{addr}/a/b?c=d"), IO_TIMEOUT).unwrap();
        assert_eq!((status, body.as_str()), (404, "nope"));
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /a/b?c=d HTTP/1.1\r\n"));
        assert!(get_url("https://example.invalid/", IO_TIMEOUT).is_err());
    }
}
