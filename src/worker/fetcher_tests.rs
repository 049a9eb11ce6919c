//! The fetchers against fake peers on loopback: a stalled peer holds up only its own
//! fetches; a broken connection to the only holder is tried again, to one of several holders
//! it is not; a holder that is gone is reported within the reconnect patience.

use super::fetcher::{Fetchers, Report};
use super::state::FetchError;
use crate::protocol::{encode_frame, Data, FrameReader, FromPeer, PeerTimeouts, Role, TaskId, ToPeer};
use async_io::Timer;
use futures_lite::{AsyncWriteExt, FutureExt};
use smol::Task;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type Outcome = (TaskId, Result<Data, FetchError>);

fn timeouts() -> PeerTimeouts {
    PeerTimeouts {
        connect: Duration::from_millis(500),
        progress: Duration::from_millis(500),
        reconnect: Duration::from_secs(2),
    }
}

fn fetchers() -> (Fetchers<Outcome>, async_channel::Receiver<Outcome>) {
    let (tx, rx) = async_channel::unbounded();
    let report = Report {
        events: tx,
        event: |t, r| (t, r),
    };
    (Fetchers::new(report, timeouts()), rx)
}

/// The next outcome, failing the test after a minute instead of hanging it.
fn next(rx: &async_channel::Receiver<Outcome>) -> Outcome {
    smol::block_on(async { rx.recv().await.expect("the fetchers report") }.or(async {
        Timer::after(Duration::from_secs(60)).await;
        panic!("no outcome within 60 s");
    }))
}

/// A peer port that answers every task with its id's bytes.
fn good_peer() -> (String, Task<()>) {
    id_peer(usize::MAX)
}

/// A peer port that answers one fetch per connection and then closes it, as a peer that
/// restarted between two fetches leaves the connection kept from the first.
fn one_fetch_per_connection_peer() -> (String, Task<()>) {
    id_peer(1)
}

/// A peer port that answers each task with its id's bytes, `fetches` fetches a connection.
fn id_peer(fetches: usize) -> (String, Task<()>) {
    crate::protocol::net::fake_peer_port(move |link| async move {
        let mut writer = link.writer;
        let mut reader = FrameReader::new(link.reader);
        for _ in 0..fetches {
            let Ok(Some(ToPeer::Fetch { tasks })) = reader.next::<ToPeer>().await else {
                return;
            };
            let mut buf = Vec::new();
            for t in tasks {
                encode_frame(&mut buf, &FromPeer::Data { task: t, len: 8 }).expect("encode");
                buf.extend_from_slice(&t.0.to_le_bytes());
            }
            if writer.write_all(&buf).await.is_err() {
                return;
            }
        }
    })
}

/// A stopped peer: its kernel accepts connections, nothing answers.
fn stopped_peer() -> (String, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    (listener.local_addr().expect("local address").to_string(), listener)
}

/// A peer that breaks its first `breaks` connections before the handshake (restarting its
/// listener), then answers its handshake and one fetch with the id's bytes.
fn restarting_peer(breaks: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let thread = std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(breaks + 1).enumerate() {
            let Ok(stream) = stream else { continue };
            if n < breaks {
                drop(stream);
                continue;
            }
            let s = smol::net::TcpStream::try_from(stream).expect("async stream");
            smol::block_on(async {
                let Ok(link) = crate::protocol::net::test_accept(s, Role::Worker, &[Role::Peer]).await else {
                    return;
                };
                let mut writer = link.writer;
                let mut reader = FrameReader::new(link.reader);
                if let Ok(Some(ToPeer::Fetch { tasks })) = reader.next::<ToPeer>().await {
                    let mut buf = Vec::new();
                    for t in tasks {
                        encode_frame(&mut buf, &FromPeer::Data { task: t, len: 8 }).expect("encode");
                        buf.extend_from_slice(&t.0.to_le_bytes());
                    }
                    writer.write_all(&buf).await.expect("answer");
                    writer.flush().await.expect("answer");
                }
            });
        }
    });
    (addr, thread)
}

#[test]
fn a_stalled_peer_holds_up_only_its_own_fetches() {
    let (stalled, _listener) = stopped_peer();
    let (good, _peer) = good_peer();
    let (mut f, rx) = fetchers();
    f.fetch(TaskId(1), stalled.clone(), true);
    f.fetch(TaskId(2), good.clone(), true);
    f.fetch(TaskId(3), good, false);
    // The good peer's answers come first, while the stalled one's connection waits.
    let mut got = [next(&rx), next(&rx)];
    got.sort_by_key(|(t, _)| *t);
    assert_eq!(got[0].0, TaskId(2));
    assert_eq!(got[0].1.as_deref().ok(), Some(&2u64.to_le_bytes().to_vec()));
    assert_eq!(got[1].0, TaskId(3));
    assert!(got[1].1.is_ok());
    let (t, r) = next(&rx);
    assert_eq!(t, TaskId(1));
    match r {
        Err(FetchError::Transfer(why)) => assert!(why.contains("accepted but never answered"), "{why}"),
        other => panic!("expected a failed transfer, got {other:?}"),
    }
}

#[test]
fn a_broken_connection_to_the_only_holder_is_tried_again() {
    let (addr, thread) = restarting_peer(2);
    let (mut f, rx) = fetchers();
    f.fetch(TaskId(9), addr.to_string(), true);
    let (t, r) = next(&rx);
    assert_eq!(t, TaskId(9));
    assert_eq!(r.as_deref().ok(), Some(&9u64.to_le_bytes().to_vec()), "{r:?}");
    thread.join().expect("the peer's thread ends");
}

#[test]
fn a_broken_connection_to_one_of_several_holders_is_reported_at_once() {
    let (addr, thread) = restarting_peer(1);
    let (mut f, rx) = fetchers();
    f.fetch(TaskId(9), addr.to_string(), false);
    let (_, r) = next(&rx);
    assert!(
        matches!(r, Err(FetchError::Transfer(_))),
        "the core asks the next holder: {r:?}"
    );
    // The peer is back for the next fetch.
    f.fetch(TaskId(10), addr.to_string(), false);
    let (t, r) = next(&rx);
    assert_eq!((t, r.is_ok()), (TaskId(10), true), "{r:?}");
    thread.join().expect("the peer's thread ends");
}

#[test]
fn a_holder_that_is_gone_is_reported_within_the_reconnect_patience() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = free.local_addr().expect("local address").to_string();
    drop(free);
    let (mut f, rx) = fetchers();
    let start = Instant::now();
    f.fetch(TaskId(4), addr, true);
    let (_, r) = next(&rx);
    let took = start.elapsed();
    assert!(matches!(r, Err(FetchError::Transfer(_))), "{r:?}");
    // Tried for the patience (2 s here), and not much longer.
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
}

/// A connection kept from an earlier fetch that broke meanwhile is replaced, not reported:
/// even for an input with other holders, the peer never refused anything.
#[test]
fn a_kept_connection_that_broke_is_replaced_without_a_failure() {
    let (addr, _peer) = one_fetch_per_connection_peer();
    let (mut f, rx) = fetchers();
    f.fetch(TaskId(1), addr.clone(), false);
    assert!(next(&rx).1.is_ok());
    f.fetch(TaskId(2), addr, false);
    let (t, r) = next(&rx);
    assert_eq!(t, TaskId(2));
    assert_eq!(r.as_deref().ok(), Some(&2u64.to_le_bytes().to_vec()), "{r:?}");
}
