//! `faultline serve` under slow clients (issue 19, finding 3): 40 connections that trickle a
//! header line every 2 s neither starve a normal request nor keep their slots past the head
//! deadline.

mod report_support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use report_support::Served;

const SLOW: usize = 40;

#[test]
fn forty_slow_connections_do_not_starve_a_normal_request() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Served::start(tmp.path());
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).expect("connect");
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // Keep them trickling: one header line each every 2 s, in the background; returns how many
    // the server had closed by the end (a write to a closed connection fails soon after).
    let trickle = std::thread::spawn(move || {
        let mut closed = 0;
        for _ in 0..6 {
            std::thread::sleep(Duration::from_secs(2));
            closed = slow.iter_mut().map(|c| c.write_all(b"X-Slow: 1\r\n").is_err()).filter(|&failed| failed).count();
        }
        closed
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (code, _, body) = s.get("/");
    let took = t.elapsed();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(took < Duration::from_secs(2), "a normal request waited {took:?} behind {SLOW} slow ones");
    let closed = trickle.join().unwrap();
    assert_eq!(closed, SLOW, "the server kept slow connections 12 s, past its head deadline");
}
