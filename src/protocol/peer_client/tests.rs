//! The peer client against fake peers on loopback: one that accepts and never answers, one
//! that goes silent in the middle of a result, one that is slow but steady, one whose first
//! connection breaks. Timeouts are short here; the bounds asserted are far from them.

use super::*;
use crate::protocol::net::test_accept;
use crate::protocol::{encode_frame, FrameReader, FromPeer, LinkWriter, ToPeer};
use smol::Task;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Runs `f` to its end, failing the test (instead of hanging it) if that takes a minute: the
/// bug these tests pin is a wait without end.
fn bounded<T>(f: impl Future<Output = T>) -> T {
    smol::block_on(f.or(async {
        Timer::after(Duration::from_secs(60)).await;
        panic!("still waiting after 60 s");
    }))
}

fn short(progress_ms: u64) -> PeerTimeouts {
    PeerTimeouts {
        connect: Duration::from_millis(300),
        progress: Duration::from_millis(progress_ms),
        reconnect: Duration::from_secs(3),
    }
}

/// A fake peer's writer, shared by its answers.
type Writer = Arc<smol::lock::Mutex<LinkWriter>>;

/// How a fake peer answers one fetch of one task on `writer`.
type Answer = fn(TaskId, Writer) -> futures_lite::future::Boxed<()>;

/// A fake peer port that answers every fetch with `answer`, one task at a time.
fn fake_peer(answer: Answer) -> (String, Task<()>) {
    crate::protocol::net::fake_peer_port(move |link| async move {
        let writer = Arc::new(smol::lock::Mutex::new(link.writer));
        let mut reader = FrameReader::new(link.reader);
        while let Ok(Some(ToPeer::Fetch { tasks })) = reader.next::<ToPeer>().await {
            for t in tasks {
                answer(t, writer.clone()).await;
            }
        }
    })
}

async fn send(w: &Writer, msg: &FromPeer, bytes: &[u8]) {
    let mut w = w.lock().await;
    let mut buf = Vec::new();
    encode_frame(&mut buf, msg).expect("encode");
    buf.extend_from_slice(bytes);
    w.write_all(&buf).await.expect("write to the client");
    w.flush().await.expect("flush to the client");
}

fn fetch_one(addr: &str, timeouts: PeerTimeouts) -> Result<Vec<Option<Data>>, PeerError> {
    bounded(async {
        let mut c = PeerClient::connect_with(addr, Role::Peer, timeouts, Duration::ZERO).await?;
        c.fetch(&[TaskId(7)]).await
    })
}

/// A stopped process: the kernel completes the TCP handshake for its listener, but nothing
/// ever answers ours.
#[test]
fn a_peer_that_accepts_and_never_answers_times_out_connecting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address").to_string();
    let start = Instant::now();
    let err = bounded(PeerClient::connect_with(
        &addr,
        Role::Peer,
        short(300),
        Duration::from_secs(5),
    ))
    .err()
    .expect("nothing answers");
    // A timed-out attempt is not tried again within the 5 s of patience.
    assert!(start.elapsed() < Duration::from_secs(4), "{err}");
    assert!(
        matches!(
            &err,
            PeerError::Connect {
                source: AttemptError::Silent { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient(), "a silent peer is not retried: {err}");
    assert!(
        err.to_string()
            .contains(&format!("tcp://{addr} accepted but never answered within 0.3 s")),
        "{err}"
    );
    drop(listener);
}

#[test]
fn a_peer_that_goes_silent_in_the_middle_of_a_result_fails_the_fetch() {
    let (addr, _peer) = fake_peer(|t, w| {
        Box::pin(async move {
            // Promise a megabyte, send a tenth of it, then say nothing more.
            send(&w, &FromPeer::Data { task: t, len: 1 << 20 }, &[1u8; 100_000]).await;
            async_io::Timer::after(Duration::from_secs(60)).await;
        })
    });
    let start = Instant::now();
    let err = fetch_one(&addr, short(300)).expect_err("the peer stalls");
    assert!(start.elapsed() < Duration::from_secs(20), "{err}");
    assert!(matches!(err, PeerError::Stalled { .. }), "{err:?}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("sent nothing for 0.3 s"), "{err}");
}

/// The progress timeout bounds silence, not length: a result that takes several times the
/// timeout to arrive, in steady pieces, arrives whole.
#[test]
fn a_slow_but_steady_result_is_not_cut_off() {
    let (addr, _peer) = fake_peer(|t, w| {
        Box::pin(async move {
            send(
                &w,
                &FromPeer::Data {
                    task: t,
                    len: 20 * 1000,
                },
                &[],
            )
            .await;
            for i in 0..20u8 {
                async_io::Timer::after(Duration::from_millis(100)).await;
                let mut w = w.lock().await;
                w.write_all(&[i; 1000]).await.expect("write a piece");
                w.flush().await.expect("flush a piece");
            }
        })
    });
    let start = Instant::now();
    let got = fetch_one(&addr, short(1000)).expect("a steady peer is waited for");
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "it took the 20 pieces' time"
    );
    let data = got[0].as_ref().expect("the peer holds it");
    assert_eq!(data.len(), 20_000);
    assert!(data
        .chunks(1000)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
}

/// A connection kept between fetches is not timed out while idle.
#[test]
fn an_idle_connection_outlives_the_progress_timeout() {
    let (addr, _peer) =
        fake_peer(|t, w| Box::pin(async move { send(&w, &FromPeer::Data { task: t, len: 3 }, b"abc").await }));
    bounded(async {
        let mut c = PeerClient::connect_with(&addr, Role::Peer, short(200), Duration::ZERO)
            .await
            .expect("connect");
        assert_eq!(
            c.fetch(&[TaskId(1)]).await.expect("first")[0].as_deref(),
            Some(&b"abc".to_vec())
        );
        async_io::Timer::after(Duration::from_millis(600)).await;
        assert_eq!(
            c.fetch(&[TaskId(2)]).await.expect("second")[0].as_deref(),
            Some(&b"abc".to_vec())
        );
    });
}

/// A listener that breaks its first `breaks` connections before the handshake (a peer
/// restarting), then answers as a worker.
fn flaky_listener(breaks: usize) -> (SocketAddr, Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().take(breaks + 1) {
            let Ok(stream) = stream else { continue };
            if count.fetch_add(1, Ordering::SeqCst) < breaks {
                drop(stream);
                continue;
            }
            let s = smol::net::TcpStream::try_from(stream).expect("async stream");
            let _ = smol::block_on(test_accept(s, Role::Worker, &[Role::Peer]));
        }
    });
    (addr, seen, thread)
}

#[test]
fn a_broken_connection_is_tried_again_within_the_patience_only() {
    let (addr, seen, thread) = flaky_listener(2);
    let addr = addr.to_string();
    let once = bounded(PeerClient::connect_with(&addr, Role::Peer, short(300), Duration::ZERO))
        .err()
        .expect("the first connection breaks");
    assert!(once.is_transient(), "{once}");
    let patient = bounded(PeerClient::connect_with(
        &addr,
        Role::Peer,
        short(300),
        Duration::from_secs(10),
    ));
    assert!(patient.is_ok(), "{:?}", patient.err());
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    thread.join().expect("the listener thread ends");
}
