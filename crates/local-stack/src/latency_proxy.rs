//! A TCP proxy that adds a fixed round-trip time between a client and an upstream server, so a
//! local database can stand in for one in another region (the region lab).
//!
//! Each direction of each connection is delayed by half the round trip: a request and its
//! response together pay one RTT, as across a real distance. Bytes keep their order (one FIFO
//! queue per direction), and each queue is bounded, so a fast sender is slowed down instead of
//! filling memory. Connection setup itself is not delayed (the upstream connection is opened at
//! once): clients that reuse connections, as HTTP clients do, see one RTT per exchange.
//!
//! Plain std threads: four per open connection, which is fine for the few dozen connections a
//! benchmark opens. Dropping the proxy stops accepting and shuts down every open connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest chunk read at once; with [`QUEUE_CHUNKS`] it bounds the bytes held per direction.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks waiting out their delay per direction (at most 1 MiB with 16 KiB chunks).
const QUEUE_CHUNKS: usize = 64;

pub struct LatencyProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    round_trip: Duration,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the accept loop and the connections share with the proxy handle.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Both sockets of every open connection, so `drop` can shut them down and wake their threads.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    accepted: AtomicU64,
}

/// One chunk on its way, or the sender's end of stream.
enum Segment {
    Data(Vec<u8>, Instant),
    End(Instant),
}

impl LatencyProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`, adding `round_trip`.
    pub fn start(upstream: SocketAddr, round_trip: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let one_way = round_trip / 2;
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("latency-proxy-{}", addr.port()))
                .spawn(move || accept_loop(&listener, upstream, one_way, &shared))?
        };
        Ok(Self { addr, upstream, round_trip, shared, acceptor: Some(acceptor) })
    }

    /// Like [`LatencyProxy::start`] for an `http://host:port` URL; returns the proxy, whose
    /// [`LatencyProxy::url`] replaces it.
    pub fn for_url(upstream_url: &str, round_trip: Duration) -> io::Result<Self> {
        Self::start(socket_addr_of(upstream_url)?, round_trip)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn round_trip(&self) -> Duration {
        self.round_trip
    }

    /// `http://127.0.0.1:<port>`: the upstream's URL as seen through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted since start.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections currently open.
    pub fn connections_open(&self) -> usize {
        self.shared.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it so it sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap_or_else(PoisonError::into_inner));
        for (client, upstream) in open.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

/// `http://127.0.0.1:8080/path` → `127.0.0.1:8080` (loopback URLs as devdb prints them).
pub fn socket_addr_of(url: &str) -> io::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no address for {url}")))
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, one_way: Duration, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        // A refused upstream closes the client's connection, as the upstream itself would.
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else { continue };
        if let Err(error) = open_connection(client, server, one_way, shared) {
            eprintln!("latency proxy: cannot forward a connection: {error}");
        }
    }
}

/// Starts the four threads of one connection: for each direction a reader that stamps chunks
/// and a writer that sends each one when its delay is over.
fn open_connection(client: TcpStream, server: TcpStream, one_way: Duration, shared: &Arc<Shared>) -> io::Result<()> {
    // Small requests and answers must not wait for Nagle's algorithm on top of the delay.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, (client.try_clone()?, server.try_clone()?));
    // The client may half-close (the upstream still answers); when the upstream ends, the
    // connection is over for the client too, even if it never closes its side.
    let directions = [(client.try_clone()?, server.try_clone()?, End::Half), (server, client, End::Full)];
    let finished = Arc::new(AtomicU64::new(0));
    for (from, to, end) in directions {
        let (sender, receiver) = sync_channel(QUEUE_CHUNKS);
        let reader_from = from.try_clone()?;
        let reader_to = to.try_clone()?;
        std::thread::Builder::new()
            .name("latency-proxy-read".into())
            .spawn(move || read_side(reader_from, &reader_to, &sender))?;
        let shared = Arc::clone(shared);
        let finished = Arc::clone(&finished);
        std::thread::Builder::new().name("latency-proxy-write".into()).spawn(move || {
            write_side(&receiver, &from, to, one_way, end);
            // The second direction to finish closes the connection's registry entry.
            if finished.fetch_add(1, Ordering::SeqCst) == 1 {
                shared.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            }
        })?;
    }
    Ok(())
}

/// Reads `from` until end of stream or error and queues what it read with its arrival time.
fn read_side(mut from: TcpStream, to: &TcpStream, queue: &SyncSender<Segment>) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = queue.send(Segment::End(Instant::now()));
                return;
            }
            Ok(read) => {
                let chunk = buffer.get(..read).map(<[u8]>::to_vec).unwrap_or_default();
                if queue.send(Segment::Data(chunk, Instant::now())).is_err() {
                    // The writer gave up (its peer went away): stop reading, and close ours.
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // A reset, or `drop` shut the socket down: the other side learns of it at once
                // (an error has no delay worth modelling).
                let _ = to.shutdown(Shutdown::Both);
                let _ = queue.send(Segment::End(Instant::now()));
                return;
            }
        }
    }
}

/// What a writer does when its sender's stream ends.
#[derive(Clone, Copy)]
enum End {
    /// Half-close the receiver: it sees the end of stream and may still answer.
    Half,
    /// Close the whole connection.
    Full,
}

/// Sends each queued chunk to `to` once `one_way` has passed since it arrived; at end of stream
/// closes `to` as `end` says, so the far side sees the end after the same delay.
fn write_side(queue: &Receiver<Segment>, from: &TcpStream, mut to: TcpStream, one_way: Duration, end: End) {
    while let Ok(segment) = queue.recv() {
        let arrived = match &segment {
            Segment::Data(_, arrived) | Segment::End(arrived) => *arrived,
        };
        let due = arrived + one_way;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        match segment {
            Segment::Data(chunk, _) => {
                if to.write_all(&chunk).is_err() {
                    // The receiver is gone: the sender cannot be heard any more either.
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
            }
            Segment::End(_) => {
                match end {
                    End::Half => {
                        let _ = to.shutdown(Shutdown::Write);
                    }
                    End::Full => {
                        // Wakes the other direction's reader, which then ends too.
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// An upstream that answers each line with the same line upper-cased, then closes when the
    /// client sends `bye`.
    fn start_echo_upstream() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in io::BufReader::new(stream).lines() {
                        let line = line.unwrap();
                        if line == "bye" {
                            return;
                        }
                        writer.write_all(format!("{}\n", line.to_uppercase()).as_bytes()).unwrap();
                    }
                });
            }
        });
        addr
    }

    fn exchange(stream: &mut TcpStream, line: &str) -> (String, Duration) {
        let started = Instant::now();
        stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            answer.push(byte[0]);
        }
        (String::from_utf8(answer).unwrap(), started.elapsed())
    }

    #[test]
    fn each_exchange_pays_one_round_trip() {
        let proxy = LatencyProxy::start(start_echo_upstream(), Duration::from_millis(100)).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        for _ in 0..3 {
            let (answer, took) = exchange(&mut stream, "ping");
            assert_eq!(answer, "PING");
            assert!(took >= Duration::from_millis(100), "{took:?}");
            assert!(took < Duration::from_millis(300), "{took:?}");
        }
    }

    #[test]
    fn zero_round_trip_forwards_at_once() {
        let proxy = LatencyProxy::start(start_echo_upstream(), Duration::ZERO).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        let (answer, took) = exchange(&mut stream, "fast");
        assert_eq!(answer, "FAST");
        assert!(took < Duration::from_millis(100), "{took:?}");
    }

    #[test]
    fn forwards_large_binary_data_intact_both_ways() {
        // An upstream that sends back every byte it receives, unchanged.
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let upstream = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            io::copy(&mut &stream, &mut writer).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let proxy = LatencyProxy::start(upstream, Duration::from_millis(20)).unwrap();
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        // Bigger than the queue (64 × 16 KiB), so back-pressure is exercised; every byte value.
        let sent: Vec<u8> = (0..3_000_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let writer = {
            let mut stream = stream.try_clone().unwrap();
            let sent = sent.clone();
            std::thread::spawn(move || {
                stream.write_all(&sent).unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut received = Vec::new();
        (&stream).read_to_end(&mut received).unwrap();
        writer.join().unwrap();
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "bytes changed on the way");
    }

    #[test]
    fn closes_the_client_when_the_upstream_closes() {
        let proxy = LatencyProxy::start(start_echo_upstream(), Duration::from_millis(40)).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(exchange(&mut stream, "a").0, "A");
        let started = Instant::now();
        stream.write_all(b"bye\n").unwrap();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).unwrap();
        assert_eq!(read, 0, "end of stream without data");
        // The close travels like data: after the request's half and the answer's half.
        assert!(started.elapsed() >= Duration::from_millis(40), "{:?}", started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(2);
        while proxy.connections_open() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(proxy.connections_open(), 0);
    }

    #[test]
    fn handles_many_connections_at_once() {
        let proxy = LatencyProxy::start(start_echo_upstream(), Duration::from_millis(100)).unwrap();
        let started = Instant::now();
        let clients: Vec<_> = (0..40)
            .map(|n| {
                let addr = proxy.addr();
                std::thread::spawn(move || {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    exchange(&mut stream, &format!("client {n}")).0
                })
            })
            .collect();
        for (n, client) in clients.into_iter().enumerate() {
            assert_eq!(client.join().unwrap(), format!("CLIENT {n}"));
        }
        // In parallel, not one after another (40 × 100 ms).
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        assert_eq!(proxy.connections_accepted(), 40);
    }

    #[test]
    fn dropping_the_proxy_closes_open_connections_and_stops_listening() {
        let proxy = LatencyProxy::start(start_echo_upstream(), Duration::from_millis(10)).unwrap();
        let addr = proxy.addr();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(exchange(&mut stream, "x").0, "X");
        drop(proxy);
        let mut rest = Vec::new();
        // Either a clean end of stream or a reset: the connection is over.
        let ended = matches!(stream.read_to_end(&mut rest), Ok(0) | Err(_));
        assert!(ended);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    }

    #[test]
    fn finds_the_address_in_a_url() {
        assert_eq!(socket_addr_of("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(socket_addr_of("http://127.0.0.1:81/v3/pipeline").unwrap(), "127.0.0.1:81".parse().unwrap());
        assert!(socket_addr_of("http://no-port").is_err());
    }
}
