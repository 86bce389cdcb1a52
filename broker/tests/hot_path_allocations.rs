//! Performance regression guard that does not flake: heap allocations per message on the hot path
//! (publish -> route -> enqueue -> deliver -> ack), counted by dhat through real sockets. Timings
//! vary from run to run; allocation counts do not, so a change that adds an allocation (or a copy
//! into a fresh buffer) per message fails here, whatever the machine's load.
//!
//! Its own test binary (the counting allocator is global) with a single test.
mod common;
use common::hot_path::{connect, run};
use common::TestBroker;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Messages per measured run.
const N: u64 = 20_000;
/// Allocations per message the broker may make today (measured: see the assertion's message), with
/// room for amortised growth of buffers; one more per message is a regression.
const MAX_ALLOCATIONS_PER_MESSAGE: f64 = 1.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_allocations_per_message_stay_bounded() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let b = TestBroker::start().await;
    let (mut publisher, mut consumer) = connect(&b, "hot").await;
    // Warm up: buffers, maps and queues reach their working sizes.
    run(&mut publisher, &mut consumer, "hot", N).await;
    let before = dhat::HeapStats::get();
    run(&mut publisher, &mut consumer, "hot", N).await;
    let after = dhat::HeapStats::get();
    let per_message = (after.total_blocks - before.total_blocks) as f64 / N as f64;
    let bytes_per_message = (after.total_bytes - before.total_bytes) as f64 / N as f64;
    eprintln!("hot path: {per_message:.2} allocations, {bytes_per_message:.0} bytes allocated per message");
    assert!(
        per_message <= MAX_ALLOCATIONS_PER_MESSAGE,
        "{per_message:.2} allocations per message (limit {MAX_ALLOCATIONS_PER_MESSAGE}); {bytes_per_message:.0} bytes"
    );
}
