//! Closed-loop load generator for the Raft benchmark (docs/benchmarks.md, "Raft node"): N
//! clients, each with one request outstanding at a time, mixing linearizable reads and writes
//! over a key space, against either faultline-node's client API or etcd's v3 JSON gateway
//! (`/v3/kv/put`, `/v3/kv/range`; etcd's ranges are linearizable by default). Client i talks to
//! endpoint i mod n (followers forward, in both systems). Prints one JSON line of results.
//!
//! ```text
//! cargo run --release --example loadgen -- --system faultline \
//!     --endpoints 127.0.0.11:8080,127.0.0.12:8080,127.0.0.13:8080 --clients 32 --duration-s 20
//! ```

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Faultline,
    Etcd,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    system: System,
    /// HOST:PORT of every member's client endpoint.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured duration (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// Fraction of operations that are reads.
    #[arg(long, default_value_t = 0.5)]
    read_fraction: f64,
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

/// Standard base64 (RFC 4648) of `bytes`, as etcd's JSON gateway expects for keys and values.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    read_us: Vec<u32>,
    write_us: Vec<u32>,
    errors: u64,
}

async fn client(
    args: std::sync::Arc<Args>,
    idx: usize,
    http: reqwest::Client,
    start: Instant,
    warm_until: Instant,
    end: Instant,
) -> Tally {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed.wrapping_mul(1000).wrapping_add(idx as u64));
    let ep = &args.endpoints[idx % args.endpoints.len()];
    let mut t = Tally::default();
    let _ = start;
    while Instant::now() < end {
        let key = format!("key-{}", rng.random_range(0..args.keys));
        let read = rng.random_bool(args.read_fraction);
        let value: i64 = rng.random_range(0..1_000_000);
        let (url, body) = match (args.system, read) {
            (System::Faultline, true) => (format!("http://{ep}/kv/read"), json!({"key": key})),
            (System::Faultline, false) => (format!("http://{ep}/kv/write"), json!({"key": key, "value": value})),
            (System::Etcd, true) => (format!("http://{ep}/v3/kv/range"), json!({"key": base64(key.as_bytes())})),
            (System::Etcd, false) => (
                format!("http://{ep}/v3/kv/put"),
                json!({"key": base64(key.as_bytes()), "value": base64(value.to_string().as_bytes())}),
            ),
        };
        let t0 = Instant::now();
        let ok = match http.post(&url).json(&body).send().await {
            Ok(r) => {
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                ok
            }
            Err(_) => false,
        };
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        if t0 < warm_until {
            continue;
        }
        if !ok {
            t.errors += 1;
        } else if read {
            t.read_us.push(us);
        } else {
            t.write_us.push(us);
        }
    }
    t
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.read_fraction) {
        bail!("--read-fraction must be within [0, 1]");
    }
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must be positive");
    }
    let args = std::sync::Arc::new(args);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(args.clients)
        .tcp_nodelay(true)
        .build()
        .context("http client")?;
    let start = Instant::now();
    let warm_until = start + Duration::from_secs(args.warmup_s);
    let end = warm_until + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        tasks.push(tokio::spawn(client(args.clone(), i, http.clone(), start, warm_until, end)));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.context("client task")?;
        all.read_us.extend(t.read_us);
        all.write_us.extend(t.write_us);
        all.errors += t.errors;
    }
    let mut both: Vec<u32> = all.read_us.iter().chain(all.write_us.iter()).copied().collect();
    both.sort_unstable();
    all.read_us.sort_unstable();
    all.write_us.sort_unstable();
    let secs = args.duration_s as f64;
    let out = json!({
        "label": args.label,
        "system": format!("{:?}", args.system).to_lowercase(),
        "members": args.endpoints.len(),
        "clients": args.clients,
        "read_fraction": args.read_fraction,
        "duration_s": args.duration_s,
        "ok_ops": both.len(),
        "errors": all.errors,
        "throughput_ops_s": (both.len() as f64 / secs).round(),
        "p50_ms": pct(&both, 0.50),
        "p99_ms": pct(&both, 0.99),
        "read_p50_ms": pct(&all.read_us, 0.50),
        "read_p99_ms": pct(&all.read_us, 0.99),
        "write_p50_ms": pct(&all.write_us, 0.50),
        "write_p99_ms": pct(&all.write_us, 0.99),
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
