//! The two collectors the registry needs beyond its plain metrics.
//!
//! [`Fixed`]: a labelled family whose label sets are all known at start. The library's
//! `Family` creates a label set on first use and keeps its members in a hash map, so a
//! fresh daemon would not export `dms_requests_total{action="unmount",outcome="error"} 0`
//! (a rate over a series that appears late misses its first increment) and the members'
//! order would change from one process to the next.
//!
//! [`Scraped`]: the values computed from the engine's state at each scrape ([`Gauges`]),
//! encoded from one snapshot taken for that scrape, so nothing is mirrored in the registry
//! where it could drift or mix two scrapes.

use super::Gauges;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;

type Labels = Vec<(&'static str, &'static str)>;

/// One family, its members in the order they were added.
#[derive(Debug)]
pub(super) struct Fixed<M> {
    name: &'static str,
    help: &'static str,
    members: Vec<(Labels, M)>,
}

impl<M> Fixed<M> {
    /// `help` is written as given (no full stop is appended, unlike `Registry::register`).
    pub(super) fn new(name: &'static str, help: &'static str) -> Fixed<M> {
        Fixed { name, help, members: Vec::new() }
    }

    pub(super) fn add(&mut self, labels: Labels, metric: M) {
        self.members.push((labels, metric));
    }
}

impl<M> Collector for Fixed<M>
where
    M: EncodeMetric + TypedMetric + std::fmt::Debug + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }
}

impl<M: EncodeMetric + TypedMetric> Fixed<M> {
    fn encode_into(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(self.name, self.help, None, M::TYPE)?;
        for (labels, metric) in &self.members {
            metric.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// The scrape-time families, from one [`Gauges`] snapshot.
#[derive(Debug)]
pub(super) struct Scraped(pub(super) Gauges);

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = &self.0;
        let mut targets = Fixed::new("dms_targets", "Targets the journal tracks, by phase.");
        for (phase, n) in [
            ("mounted", g.mounted),
            ("unmounted", g.unmounted),
            ("mounting", g.mounting),
            ("unmounting", g.unmounting),
            ("dirty", g.dirty),
            ("healing", g.healing),
        ] {
            targets.add(vec![("phase", phase)], ConstGauge::new(n));
        }
        targets.encode_into(&mut encoder)?;
        let plain = [
            (
                "dms_helpers_tracked",
                "Targets whose journal names a helper process (running or to be cleaned up).",
                g.helpers_tracked,
            ),
            (
                "dms_nfs_breakers_open",
                "NFS servers whose circuit breaker is open or probing: their mounts fail fast.",
                g.nfs_breakers_open,
            ),
            (
                "dms_requests_parked",
                "Requests waiting for their target's turn, parked in the journal with their delivery acked.",
                g.requests_parked,
            ),
            (
                "dms_broker_connected",
                "1 while the AMQP session with the broker is up, 0 while the daemon reconnects.",
                u64::from(g.broker_connected),
            ),
            (
                "dms_mounted_without_helper",
                "Mounted S3 targets whose journaled helper process is not running.",
                g.mounted_without_helper,
            ),
            (
                "dms_reconcile_differences",
                "Differences between journal and host at the start of the last resync pass.",
                g.reconcile_differences,
            ),
        ];
        for (name, help, value) in plain {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}
