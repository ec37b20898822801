//! `POST /txn` on real `faultline-node` processes: a transaction runs atomically through the
//! Raft log (reads see its own appends), is forwarded from followers, refuses bad bodies with
//! 400 and key-kind clashes with a definite 409, and every acknowledged transaction survives a
//! kill -9 of the leader exactly once. Roles without transactions answer 501.

mod roles_support;

use roles_support::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn txn(c: &Cluster, i: usize, ops: Value) -> (u16, Value) {
    c.post_raw(i, "/txn", &json!({ "ops": ops }).to_string()).await
}

/// Retries on every running node until the transaction commits (or panics after 15 s).
async fn txn_eventually(c: &Cluster, alive: &[usize], ops: Value) -> Value {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        for &i in alive {
            if let (200, v) = txn(c, i, ops.clone()).await {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("transaction {ops} never committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_forwarded_validated_and_survive_leader_kill9() {
    let mut c = Cluster::start("raft", 171, 3, &[]);
    c.wait_up().await;
    let first =
        txn_eventually(&c, &[0, 1, 2], json!([["append", "x", 1], ["r", "x", null], ["w", "y", 7], ["r", "y", null]]))
            .await;
    assert_eq!(first, json!({"ops": [["append", "x", 1], ["r", "x", [1]], ["w", "y", 7], ["r", "y", 7]]}));
    // Every node answers (followers forward to the leader).
    for (i, v) in [(0, 2), (1, 3), (2, 4)] {
        let (code, ans) = txn(&c, i, json!([["append", "x", v], ["r", "x", null]])).await;
        assert_eq!(code, 200, "n{}: {ans}", i + 1);
        assert_eq!(ans["ops"][1][2].as_array().unwrap().last(), Some(&json!(v)), "{ans}");
    }
    let (code, ans) = txn(&c, 0, json!([["r", "nobody", null]])).await;
    assert_eq!((code, &ans), (200, &json!({"ops": [["r", "nobody", null]]})));
    // Bad bodies: 400 with the reason; a key of the other kind: definite 409, nothing applied.
    let (code, ans) = c.post_raw(0, "/txn", r#"{"ops": [["append", "x", "one"]]}"#).await;
    assert_eq!(code, 400, "{ans}");
    assert!(ans["message"].as_str().unwrap().contains("expected an integer"), "{ans}");
    let (code, ans) = txn(&c, 1, json!([["append", "z", 1], ["append", "y", 8]])).await;
    assert_eq!(
        (code, ans["error"].as_str(), ans["definite"].as_bool()),
        (409, Some("txn-failed"), Some(true)),
        "{ans}"
    );
    let (_, ans) = txn(&c, 2, json!([["r", "z", null]])).await;
    assert_eq!(ans["ops"][0][2], Value::Null, "the failed transaction's append was not applied");

    acked_appends_survive_a_leader_kill9(&mut c).await;
}

/// Appends 5..25 to `x` (1..4 are there already), kills the leader with -9, and checks that the
/// new leader's list holds every acknowledged append exactly once.
async fn acked_appends_survive_a_leader_kill9(c: &mut Cluster) {
    let mut acked = vec![1, 2, 3, 4];
    for v in 5..25 {
        if txn(c, v as usize % 3, json!([["append", "x", v]])).await.0 == 200 {
            acked.push(v);
        }
    }
    let leader = (0..3).find(|&i| is_leader(c, i)).expect("some node is the leader");
    c.kill9(leader);
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let ans = txn_eventually(c, &alive, json!([["append", "x", 100], ["r", "x", null]])).await;
    let list: Vec<i64> = serde_json::from_value(ans["ops"][1][2].clone()).unwrap();
    acked.push(100);
    for v in &acked {
        assert_eq!(list.iter().filter(|x| *x == v).count(), 1, "acknowledged append {v} in {list:?}");
    }
    c.spawn(leader);
}

/// Whether node i said it was the leader at its last status (a blocking check is enough here).
fn is_leader(c: &Cluster, i: usize) -> bool {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(c.status(i))).is_some_and(|s| s["state"] == "leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_transactions_answers_501() {
    let mut c = Cluster::start("paxos", 172, 3, &[]);
    c.wait_up().await;
    let (code, ans) = txn(&c, 0, json!([["r", "x", null]])).await;
    assert_eq!(
        (code, ans["error"].as_str(), ans["definite"].as_bool()),
        (501, Some("unsupported"), Some(true)),
        "{ans}"
    );
    assert!(ans["message"].as_str().unwrap().contains("only the raft role"), "{ans}");
}
