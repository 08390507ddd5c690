//! The test suite's shared services: one RabbitMQ node and one Barbican. `scripts/test.sh`
//! starts them before the benchmark smoke runs and the tests. Every test process that asks
//! for the shared node gets a virtual host of its own on it (`tests/support/broker.rs`,
//! `DMS_TEST_SUITE_BROKER`); every test that asks for the shared Barbican stores its
//! secrets under its own token's project (`tests/support/barbican.rs`,
//! `DMS_TEST_SUITE_BARBICAN`). Tests that inject faults start their own, as before.
//!
//! Usage: `suite_services DIR`. Starts both at once, writes their descriptors to
//! `DIR/broker` and `DIR/barbican` once each answers, then waits to be killed. However it
//! dies (SIGTERM at the end of the suite, or with the suite), each service's janitor
//! (`scripts/infra/janitor.sh`, as for every test's) kills it and removes its directory.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

/// Writes `text` to `file` whole (a reader never sees a partial descriptor).
fn publish(file: &Path, text: &str) {
    let partial = file.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, file).unwrap();
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        // `cargo test --examples` runs it like this: nothing to start.
        eprintln!("usage: suite_services DIR (scripts/test.sh starts it)");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let barbican = std::thread::spawn(support::Barbican::start);
    let broker = support::Broker::start_for_suite();
    publish(&dir.join("broker"), &broker.suite_descriptor());
    let barbican = barbican.join().unwrap_or_else(|_| panic!("the suite's Barbican did not start"));
    publish(&dir.join("barbican"), &barbican.suite_descriptor());
    eprintln!(
        "suite services up: RabbitMQ {} in {:.1} s (AMQP 127.0.0.1:{}), Barbican in {:.1} s ({})",
        broker.node_name(),
        broker.startup_time().as_secs_f64(),
        broker.amqp_port(),
        barbican.startup_time().as_secs_f64(),
        barbican.url(),
    );
    // Never dropped: the janitors stop both once this process is gone.
    let _services = (broker, barbican);
    loop {
        std::thread::park();
    }
}
