//! A small load generator: threads that post report batches over plain HTTP/1.1 keep-alive
//! connections as fast as the server answers, recording each receipt and each latency. Used by
//! the crash-safety test and the ingest benchmark.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the generator saw.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// (index of the body, HTTP status, response body) for every answered request.
    pub answers: Vec<(usize, u16, String)>,
    /// Seconds per answered request.
    pub latencies: Vec<f64>,
    /// Requests that got no answer (connection refused or dropped).
    pub failed: usize,
    pub elapsed: f64,
}

impl LoadResult {
    pub fn percentile(&self, q: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort_by(f64::total_cmp);
        l.get(((l.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// One keep-alive connection.
struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    fn open(address: &str) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            host: address.to_owned(),
        })
    }

    fn post(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut buffer = vec![0u8; length];
        self.reader.read_exact(&mut buffer)?;
        Ok((status, String::from_utf8_lossy(&buffer).into_owned()))
    }
}

/// Posts `bodies` (each once, in order of a shared cursor) to `path` on `address`
/// ("127.0.0.1:port") from `threads` connections, until all are sent, `stop` is set, or
/// `deadline` passes.
pub fn run(
    address: &str,
    path: &str,
    bodies: Arc<Vec<String>>,
    threads: usize,
    deadline: Duration,
    stop: Arc<AtomicBool>,
) -> LoadResult {
    let cursor = Arc::new(AtomicUsize::new(0));
    let result = Arc::new(Mutex::new(LoadResult::default()));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (bodies, cursor, result, stop) = (bodies.clone(), cursor.clone(), result.clone(), stop.clone());
            let (address, path) = (address.to_owned(), path.to_owned());
            std::thread::spawn(move || {
                let mut connection: Option<Connection> = None;
                let mut local = LoadResult::default();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < deadline {
                    let i = cursor.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    if connection.is_none() {
                        connection = Connection::open(&address).ok();
                    }
                    let begun = Instant::now();
                    match connection.as_mut().map(|c| c.post(&path, &bodies[i])) {
                        Some(Ok((status, body))) => {
                            local.latencies.push(begun.elapsed().as_secs_f64());
                            local.answers.push((i, status, body));
                        }
                        _ => {
                            local.failed += 1;
                            connection = None;
                        }
                    }
                }
                let mut all = result.lock().unwrap();
                all.answers.append(&mut local.answers);
                all.latencies.append(&mut local.latencies);
                all.failed += local.failed;
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut result = std::mem::take(&mut *result.lock().unwrap());
    result.elapsed = started.elapsed().as_secs_f64();
    result
}

/// `n` batch bodies of one report each from new random contributors, reusing `reports`
/// (privatized reports) round-robin: what `n` browsers would post, without privatizing `n`
/// times.
pub fn batch_bodies(
    study: &chorus_shared::study::CompiledStudy,
    reports: &[chorus_messages::Report],
    n: usize,
) -> Vec<String> {
    use chorus_shared::device::{random_id, seal};
    use chorus_shared::privacy::noise::Noise;
    let mut noise = Noise::Secure;
    (0..n)
        .map(|i| {
            let (contributor, key) = (random_id(&mut noise).unwrap(), random_id(&mut noise).unwrap());
            let batch = seal(
                &study.id,
                &study.version,
                &contributor,
                &key,
                vec![reports[i % reports.len()].clone()],
                &noise,
            )
            .unwrap();
            serde_json::to_string(&batch).unwrap()
        })
        .collect()
}

/// One report per conversation of the ChatGPT fixture, privatized with OpenDP's secure noise
/// (the reports the load generator cycles through).
pub fn fixture_reports(study: &chorus_shared::study::CompiledStudy) -> Vec<chorus_messages::Report> {
    let mut noise = chorus_shared::privacy::noise::Noise::Secure;
    crate::analyses_of(&crate::fixture("chatgpt/conversations.json"))
        .iter()
        .map(|a| study.privacy.privatize(a, &study.category_ids(), &mut noise).unwrap())
        .collect()
}
