//! The test suite's one RabbitMQ node: `scripts/test.sh` starts it before the benchmark
//! smoke runs and the tests, and every test process that asks for the shared node gets a
//! virtual host of its own on it (`tests/support/broker.rs`, `DMS_TEST_SUITE_BROKER`)
//! instead of starting a node of its own.
//!
//! Usage: `suite_broker DESCRIPTOR_FILE`. Writes the node's descriptor to the file once the
//! node accepts connections, then waits to be killed. However it dies (SIGTERM at the end
//! of the suite, or with the suite), the node's janitor (`scripts/infra/janitor.sh`, as
//! for every test's node) kills the node, stops its epmd and removes its directory.
#![allow(clippy::unwrap_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

fn main() {
    let Some(file) = std::env::args_os().nth(1) else {
        // `cargo test --examples` runs it like this: nothing to start.
        eprintln!("usage: suite_broker DESCRIPTOR_FILE (scripts/test.sh starts it)");
        return;
    };
    let broker = support::Broker::start_for_suite();
    let file = std::path::PathBuf::from(file);
    let partial = file.with_extension("partial");
    std::fs::write(&partial, broker.suite_descriptor()).unwrap();
    std::fs::rename(&partial, &file).unwrap();
    eprintln!(
        "suite broker {} up in {:.1} s (AMQP 127.0.0.1:{})",
        broker.node_name(),
        broker.startup_time().as_secs_f64(),
        broker.amqp_port()
    );
    // Never dropped: the janitor stops the node once this process is gone.
    let _broker = broker;
    loop {
        std::thread::park();
    }
}
