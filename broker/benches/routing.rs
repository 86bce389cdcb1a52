//! Routing benchmark (not a test): cost per message of topic routing with 10 .. 10,000 bindings,
//! through the exchange's word trie and through the naive per-binding matcher, plus direct and
//! fanout for reference. Run: `cargo bench -p warren --bench routing`.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use warren::exchange::topic::matches;
use warren::exchange::{Binding, Dest, Exchange, ExchangeKind, Routed};
use warren::queue::Queue;
use warren_protocol::{FieldTable, ShortStr};

/// Routes per measurement.
const ITERATIONS: u32 = 200_000;

fn pattern(i: usize) -> String {
    // A mix of literal, `*` and `#` patterns over a few thousand distinct words, like per-service
    // event subscriptions.
    match i % 4 {
        0 => format!("orders.svc{}.created", i),
        1 => format!("orders.*.updated{}", i),
        2 => format!("audit.#.svc{}", i),
        _ => format!("*.svc{}.#", i),
    }
}

fn exchange_with(kind: ExchangeKind, n: usize) -> (Arc<Exchange>, Vec<String>) {
    let x = Exchange::new(ShortStr::from_static("bench"), kind, false, false, false, FieldTable::new(), None);
    let mut pats = Vec::new();
    for i in 0..n {
        let p = if kind == ExchangeKind::Direct { format!("key{i}") } else { pattern(i) };
        let q = Queue::new(ShortStr::from(format!("q{i}")), "/", false, None, false, FieldTable::new());
        x.bind(Binding { dest: Dest::Queue(q), routing_key: ShortStr::from(p.clone()), arguments: FieldTable::new() });
        pats.push(p);
    }
    (x, pats)
}

fn time(label: &str, mut f: impl FnMut() -> usize) -> f64 {
    let mut hits = 0;
    for _ in 0..1000 {
        hits += f(); // warm up
    }
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        hits += f();
    }
    let ns = start.elapsed().as_nanos() as f64 / ITERATIONS as f64;
    println!("{label:<48} {ns:>9.1} ns/message  ({} matches per message)", hits / (ITERATIONS as usize + 1000));
    ns
}

fn main() {
    let keys: Vec<&[u8]> = vec![b"orders.svc7.created"];
    let mut out = Routed::default();
    let no_props = bytes::Bytes::new();
    let props = warren::lent::Lent::all(&no_props);
    let mut trie = Vec::new();
    for n in [10usize, 100, 1000, 10_000] {
        let (x, _) = exchange_with(ExchangeKind::Topic, n);
        trie.push(time(&format!("topic trie, {n} bindings"), || {
            out.clear();
            x.route_into(black_box(&keys), None, props, &mut out);
            out.queues.len()
        }));
    }
    let mut naive = Vec::new();
    for n in [10usize, 10_000] {
        let (_, pats) = exchange_with(ExchangeKind::Topic, n);
        naive.push(time(&format!("topic naive matcher, {n} bindings"), || {
            pats.iter().filter(|p| matches(p.as_bytes(), black_box(b"orders.svc7.created"))).count()
        }));
    }
    for n in [10usize, 10_000] {
        let (x, _) = exchange_with(ExchangeKind::Direct, n);
        let k: Vec<&[u8]> = vec![b"key5"];
        time(&format!("direct, {n} bindings"), || {
            out.clear();
            x.route_into(black_box(&k), None, props, &mut out);
            out.queues.len()
        });
    }
    let (x, _) = exchange_with(ExchangeKind::Fanout, 10);
    time("fanout, 10 bindings", || {
        out.clear();
        x.route_into(&keys, None, props, &mut out);
        out.queues.len()
    });
    println!(
        "topic trie 10,000 / 10 bindings: {:.1}x; naive 10,000 / 10: {:.1}x",
        trie[3] / trie[0],
        naive[1] / naive[0]
    );
}
