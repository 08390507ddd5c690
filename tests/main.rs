//! The daemon's integration tests: one test binary (each binary links the whole daemon, so
//! one instead of twenty saves most of their compile and link time). Each file of `tests/`
//! is a module, named as before (`server_e2e::...`); nextest runs every test in a process
//! of its own (`.config/nextest.toml`), plain `cargo test` runs them as threads of one.
//! `support` starts the real components; `e2e` drives the real `dms-server` binary.
#![allow(clippy::unwrap_used)]

mod e2e;
mod support;

mod cli_ctl;
mod cli_journal;
mod cli_journal_online;
mod infra_barbican;
mod infra_broker;
mod infra_cluster;
mod infra_s3;
mod packaging;
mod server_broker;
mod server_broker_tls;
mod server_cgroup;
mod server_chaos;
mod server_cluster;
mod server_cluster_quorum;
mod server_config;
mod server_containment;
mod server_crash;
mod server_crash_heal;
mod server_e2e;
mod server_e2e_more;
mod server_full_disk;
mod server_heal;
mod server_heal_bound;
mod server_logs;
mod server_metrics;
mod server_power_cut;
mod server_recovery;
mod server_stop;
mod server_supervision;
mod server_systemd;
mod server_trust;
