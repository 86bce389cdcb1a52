//! Policies through a real client: a policy set in a vhost gives queues and exchanges declared
//! after it their TTL, length limit, dead-letter and alternate exchanges, combined with declare
//! arguments by RabbitMQ's rules (limits: the lower; the rest: the argument wins).
mod common;
use common::TestBroker;
use serde_json::json;
use std::time::Duration;
use warren_protocol::method::*;
use warren_protocol::{FieldTable, FieldValue, Method, ShortStr};

fn s(x: &str) -> ShortStr {
    ShortStr::from(x.to_string())
}

fn set_policy(b: &TestBroker, name: &str, pattern: &str, apply_to: &str, priority: i64, def: serde_json::Value) {
    let v = b.handle.as_ref().expect("running").broker.vhost("/").expect("vhost");
    let p = warren::policy::Policy::new(
        "/",
        name,
        pattern,
        apply_to,
        priority,
        def.as_object().cloned().unwrap_or_default(),
    )
    .expect("valid policy");
    v.set_policy(p, None);
}

#[tokio::test]
async fn a_policy_gives_new_queues_length_limits_ttl_and_dead_lettering() {
    let b = TestBroker::start().await;
    set_policy(
        &b,
        "limits",
        "^pol\\.",
        "queues",
        0,
        json!({"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "pol-dead"}),
    );
    // A higher-priority policy wins for the names it matches.
    set_policy(&b, "ttl", "^pol\\.ttl", "queues", 10, json!({"message-ttl": 50}));
    let mut r = b.raw().await;
    r.open_channel(1).await;
    r.declare(1, "pol-dead").await;
    r.declare(1, "pol.limited").await;
    for i in 0..3u8 {
        r.publish(1, "", "pol.limited", &[i]).await;
    }
    // max-length 2 from the policy: the oldest went to the dead-letter queue named by the policy.
    assert_eq!(r.declare_passive(1, "pol.limited").await, 2);
    assert_eq!(r.declare_passive(1, "pol-dead").await, 1);
    // Only the highest-priority policy applies: TTL, but no length limit here.
    r.declare(1, "pol.ttl.q").await;
    for i in 0..3u8 {
        r.publish(1, "", "pol.ttl.q", &[i]).await;
    }
    common::eventually(Duration::from_secs(5), || async {
        let mut c = b.raw().await;
        c.open_channel(1).await;
        (c.declare_passive(1, "pol.ttl.q").await == 0).then_some(())
    })
    .await;
    // Declare arguments combine: the lower limit applies.
    let mut args = FieldTable::new();
    args.insert("x-max-length", FieldValue::I32(1));
    let d = QueueDeclare { queue: s("pol.args"), arguments: args, ..Default::default() };
    assert!(matches!(r.call(1, d).await, Method::QueueDeclareOk(_)));
    for i in 0..3u8 {
        r.publish(1, "", "pol.args", &[i]).await;
    }
    assert_eq!(r.declare_passive(1, "pol.args").await, 1);
    // Names the pattern does not match are untouched.
    r.declare(1, "other").await;
    for i in 0..3u8 {
        r.publish(1, "", "other", &[i]).await;
    }
    assert_eq!(r.declare_passive(1, "other").await, 3);
    r.close().await;
    b.stop().await;
}

#[tokio::test]
async fn a_policy_gives_new_exchanges_an_alternate_exchange() {
    let b = TestBroker::start().await;
    set_policy(&b, "ae", "^routed$", "exchanges", 0, json!({"alternate-exchange": "unrouted"}));
    let mut r = b.raw().await;
    r.open_channel(1).await;
    for (x, kind) in [("unrouted", "fanout"), ("routed", "direct")] {
        let d = ExchangeDeclare { exchange: s(x), kind: s(kind), ..Default::default() };
        assert!(matches!(r.call(1, d).await, Method::ExchangeDeclareOk(_)));
    }
    r.declare(1, "catch-all").await;
    let bind = QueueBind { queue: s("catch-all"), exchange: s("unrouted"), ..Default::default() };
    assert!(matches!(r.call(1, bind).await, Method::QueueBindOk(_)));
    r.publish(1, "routed", "no-binding", b"lost?").await;
    assert_eq!(r.declare_passive(1, "catch-all").await, 1);
    // Invalid policies are refused when set.
    let bad = warren::policy::Policy::new(
        "/",
        "bad",
        "(",
        "all",
        0,
        json!({"message-ttl": 1}).as_object().cloned().unwrap_or_default(),
    );
    assert!(bad.is_err());
    r.close().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Priority, through the command line and a real client: a `warren` process, policies set with
// `warren ctl set_policy` (and the binary called as `rabbitmqctl`), effects observed on messages.
// Each scenario runs twice, the higher-priority policy set first and then last, so a broker where
// the last-set policy wins fails one round; the two policies carry different keys, so a broker
// that merges them fails both.
// ---------------------------------------------------------------------------------------------

use std::process::Command;

/// A `warren` process with its AMQP and management ports, on a scratch data directory.
struct Proc {
    /// The process (killed when dropped).
    w: common::process::Warren,
    /// Its AMQP listener.
    amqp: std::net::SocketAddr,
    /// Its management HTTP port.
    http: u16,
    /// Its data directory (removed when dropped).
    dir: std::path::PathBuf,
}

/// A fresh directory under the system temp dir.
fn scratch(prefix: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(common::unique(prefix));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

impl Proc {
    fn start() -> Proc {
        let dir = scratch("warren-policies");
        let w = common::process::Warren::start(&dir, &[]);
        assert!(w.http > 0, "no management listener");
        Proc { amqp: w.amqp, http: w.http, w, dir }
    }

    /// `warren ctl --port HTTP ARGS...`: its stdout; panics unless it exits 0.
    fn ctl(&self, args: &[&str]) -> String {
        self.run_tool(Command::new(env!("CARGO_BIN_EXE_warren")).arg("ctl"), args)
    }

    fn run_tool(&self, cmd: &mut Command, args: &[&str]) -> String {
        let out = cmd
            .env_remove("WARREN_MANAGEMENT_PORT")
            .args(["--port", &self.http.to_string()])
            .args(args)
            .output()
            .expect("run ctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ctl {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn set_policy(&self, name: &str, pattern: &str, priority: i64, def: serde_json::Value) {
        let prio = priority.to_string();
        let def = def.to_string();
        self.ctl(&["set_policy", "--priority", &prio, "--apply-to", "queues", name, pattern, &def]);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.w.child.kill();
        let _ = self.w.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// basic.get (no-ack) of every message in `queue`: their bodies, in order.
async fn drain_bodies(r: &mut common::raw::Raw, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let get = BasicGet { queue: s(queue), no_ack: true, ..Default::default() };
        match r.call(1, get).await {
            Method::BasicGetOk(ok) => out.push(r.content_after(Method::BasicGetOk(ok)).await.body.to_vec()),
            Method::BasicGetEmpty(_) => return out,
            other => panic!("expected get-ok or get-empty, got {other:?}"),
        }
    }
}

async fn publish_n(r: &mut common::raw::Raw, queue: &str, n: u8) {
    for i in 1..=n {
        r.publish(1, "", queue, &[i]).await;
    }
}

/// Wait until `queue` holds exactly `n` ready messages.
async fn count_becomes(addr: std::net::SocketAddr, queue: &str, n: u32) {
    common::eventually(Duration::from_secs(10), || async {
        let mut c = common::raw::Raw::connect(addr).await;
        c.open_channel(1).await;
        let got = c.declare_passive(1, queue).await;
        c.close().await;
        (got == n).then_some(())
    })
    .await;
}

/// Sets `high` (priority 5) and `low` (priority 1) in the order given by `high_first`.
fn set_pair(p: &Proc, prefix: &str, high_first: bool, high: (&str, serde_json::Value), low: (&str, serde_json::Value)) {
    let set_high = || p.set_policy(&format!("{prefix}-high"), high.0, 5, high.1.clone());
    let set_low = || p.set_policy(&format!("{prefix}-low"), low.0, 1, low.1.clone());
    if high_first {
        set_high();
        set_low();
    } else {
        set_low();
        set_high();
    }
}

#[tokio::test]
async fn the_higher_priority_policy_alone_decides_max_length_and_dead_lettering() {
    let p = Proc::start();
    for (round, high_first) in [("a", true), ("b", false)] {
        let dead = format!("{round}-dead");
        // Same pattern; high: a length limit of 2; low: a limit of 1 with a dead-letter target.
        // Only `high` applies: the head is dropped (no dead-lettering), two messages stay.
        // Merged: the dropped head would be dead-lettered. Low wins: one message stays.
        set_pair(
            &p,
            round,
            high_first,
            (&format!("^{round}\\."), json!({"max-length": 2})),
            (
                &format!("^{round}\\."),
                json!({"max-length": 1, "dead-letter-exchange": "", "dead-letter-routing-key": dead}),
            ),
        );
        let mut r = common::raw::Raw::connect(p.amqp).await;
        r.open_channel(1).await;
        r.declare(1, &dead).await;
        let q = format!("{round}.q");
        r.declare(1, &q).await;
        publish_n(&mut r, &q, 4).await;
        assert_eq!(
            drain_bodies(&mut r, &q).await,
            vec![vec![3], vec![4]],
            "round {round}: max-length 2 drops the head"
        );
        // The dead-letter queue got nothing from that queue; a control queue (the high policy's
        // pattern is narrower there: `low` alone matches) shows what dead-lettering would look like.
        p.set_policy(
            &format!("{round}-ctl"),
            &format!("^{round}-ctl$"),
            0,
            json!({"max-length": 1, "dead-letter-exchange": "", "dead-letter-routing-key": dead}),
        );
        let ctl_q = format!("{round}-ctl");
        r.declare(1, &ctl_q).await;
        publish_n(&mut r, &ctl_q, 3).await;
        count_becomes(p.amqp, &dead, 2).await;
        assert_eq!(
            drain_bodies(&mut r, &dead).await,
            vec![vec![1], vec![2]],
            "round {round}: only the control queue dead-lettered"
        );
        r.close().await;
    }
}

#[tokio::test]
async fn the_higher_priority_policy_alone_decides_message_ttl() {
    let p = Proc::start();
    for (round, high_first) in [("a", true), ("b", false)] {
        let dead = format!("{round}-dead");
        // high (narrower pattern): message-ttl 1 ms; low (every queue of the round): a dead-letter
        // target and a length limit of 1. Only `high` applies to the .ttl queue: its messages
        // expire and are dropped. Merged: they would be dead-lettered. Low wins: one stays.
        set_pair(
            &p,
            round,
            high_first,
            (&format!("^{round}\\.ttl"), json!({"message-ttl": 1})),
            (
                &format!("^{round}\\."),
                json!({"max-length": 1, "dead-letter-exchange": "", "dead-letter-routing-key": dead}),
            ),
        );
        let mut r = common::raw::Raw::connect(p.amqp).await;
        r.open_channel(1).await;
        r.declare(1, &dead).await;
        let q = format!("{round}.ttl");
        r.declare(1, &q).await;
        publish_n(&mut r, &q, 3).await;
        count_becomes(p.amqp, &q, 0).await;
        // A queue only `low` matches: the length limit dead-letters two of three.
        let other = format!("{round}.other");
        r.declare(1, &other).await;
        publish_n(&mut r, &other, 3).await;
        count_becomes(p.amqp, &dead, 2).await;
        assert_eq!(
            drain_bodies(&mut r, &dead).await,
            vec![vec![1], vec![2]],
            "round {round}: nothing expired into the dead-letter queue"
        );
        assert_eq!(drain_bodies(&mut r, &other).await, vec![vec![3]]);
        r.close().await;
    }
}

#[tokio::test]
async fn the_higher_priority_policy_alone_decides_dead_lettering_over_overflow() {
    let p = Proc::start();
    for (round, high_first) in [("a", true), ("b", false)] {
        let dead = format!("{round}-dead");
        // high: max-length 1 dead-lettering the dropped head; low: overflow reject-publish.
        // Only `high`: the queue keeps the newest, the dead-letter queue gets the two oldest.
        // Merged: reject-publish would keep the oldest and dead-letter nothing. Low wins: no limit.
        set_pair(
            &p,
            round,
            high_first,
            (
                &format!("^{round}\\."),
                json!({"max-length": 1, "dead-letter-exchange": "", "dead-letter-routing-key": dead}),
            ),
            (&format!("^{round}\\."), json!({"overflow": "reject-publish"})),
        );
        let mut r = common::raw::Raw::connect(p.amqp).await;
        r.open_channel(1).await;
        r.declare(1, &dead).await;
        let q = format!("{round}.q");
        r.declare(1, &q).await;
        publish_n(&mut r, &q, 3).await;
        assert_eq!(drain_bodies(&mut r, &q).await, vec![vec![3]], "round {round}: the head was dropped");
        count_becomes(p.amqp, &dead, 2).await;
        assert_eq!(
            drain_bodies(&mut r, &dead).await,
            vec![vec![1], vec![2]],
            "round {round}: dropped heads dead-lettered"
        );
        r.close().await;
    }
}

#[tokio::test]
async fn set_list_and_clear_policy_from_the_command_line() {
    let p = Proc::start();
    // `warren ctl` and the same binary called as rabbitmqctl.
    let dir = scratch("warren-policies-cli");
    let rabbitmqctl = dir.join("rabbitmqctl");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren"), &rabbitmqctl).expect("symlink");
    let out = p.run_tool(
        &mut Command::new(&rabbitmqctl),
        &["set_policy", "--priority", "3", "--apply-to", "queues", "cli-limit", "^cli\\.", r#"{"max-length":1}"#],
    );
    assert!(out.contains("Setting policy \"cli-limit\""), "{out}");
    p.ctl(&["set_policy", "cli-ttl", "^nothing-matches$", r#"{"message-ttl":60000}"#]);
    let list = p.run_tool(&mut Command::new(&rabbitmqctl), &["list_policies", "--formatter", "json"]);
    let rows: serde_json::Value =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("list_policies json: {e}: {list}"));
    let rows = rows.as_array().expect("array");
    let limit = rows.iter().find(|r| r["name"] == "cli-limit").unwrap_or_else(|| panic!("cli-limit listed: {list}"));
    assert_eq!(limit["pattern"], "^cli\\.");
    assert_eq!(limit["apply-to"], "queues");
    assert_eq!(limit["priority"], 3);
    assert_eq!(limit["definition"]["max-length"], 1);
    assert!(rows.iter().any(|r| r["name"] == "cli-ttl"), "{list}");

    // A queue declared afterwards keeps only the newest message.
    let mut r = common::raw::Raw::connect(p.amqp).await;
    r.open_channel(1).await;
    r.declare(1, "cli.one").await;
    publish_n(&mut r, "cli.one", 3).await;
    assert_eq!(drain_bodies(&mut r, "cli.one").await, vec![vec![3]]);

    // Cleared: gone from the list, and a queue declared afterwards has no limit.
    p.ctl(&["clear_policy", "cli-limit"]);
    let list = p.ctl(&["list_policies"]);
    assert!(!list.contains("cli-limit") && list.contains("cli-ttl"), "{list}");
    r.declare(1, "cli.two").await;
    publish_n(&mut r, "cli.two", 3).await;
    assert_eq!(drain_bodies(&mut r, "cli.two").await, vec![vec![1], vec![2], vec![3]]);
    r.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Policies imported with definitions (`rabbitmqctl import_definitions`, the file format RabbitMQ
/// exports) act by their effect, with the same priority rule: in the file the lower-priority
/// policy comes last, and the two carry different keys, so last-wins or a merge would show.
#[tokio::test]
async fn imported_policies_act_by_priority() {
    let p = Proc::start();
    let file = p.dir.join("import.json");
    let defs = json!({
        "policies": [
            {"vhost": "/", "name": "imp-high", "pattern": "^imp\\.", "apply-to": "queues", "priority": 7,
             "definition": {"max-length": 2}},
            {"vhost": "/", "name": "imp-low", "pattern": "^imp\\.", "apply-to": "queues", "priority": 2,
             "definition": {"max-length": 1, "dead-letter-exchange": "", "dead-letter-routing-key": "imp-dead"}}
        ]
    });
    std::fs::write(&file, defs.to_string()).expect("write definitions");
    p.ctl(&["import_definitions", &file.to_string_lossy()]);
    let mut r = common::raw::Raw::connect(p.amqp).await;
    r.open_channel(1).await;
    r.declare(1, "imp-dead").await;
    r.declare(1, "imp.q").await;
    publish_n(&mut r, "imp.q", 4).await;
    // Only `imp-high` applies: two messages stay, the dropped heads are not dead-lettered.
    assert_eq!(drain_bodies(&mut r, "imp.q").await, vec![vec![3], vec![4]]);
    assert_eq!(r.declare_passive(1, "imp-dead").await, 0);
    r.close().await;
}
