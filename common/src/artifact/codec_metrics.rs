//! The artifact codec's totals as Prometheus counters, read from `CodecStats` at each scrape
//! (a collector, so the decorator's hot path stays a few relaxed atomic adds).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::{Registry, Unit};

use super::CodecStats;

#[derive(Debug)]
pub struct CodecCollector(pub Arc<CodecStats>);

impl CodecCollector {
    pub fn register(stats: Arc<CodecStats>, r: &mut Registry) {
        r.register_collector(Box::new(CodecCollector(stats)));
    }
}

impl Collector for CodecCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let bytes = [
            (
                "artifact_written",
                "Artifact bytes written by this process, as given (uncompressed)",
                s.written_bytes.load(Ordering::Relaxed),
            ),
            (
                "artifact_stored",
                "Artifact bytes written by this process, as stored (after compression)",
                s.stored_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in bytes {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, Some(&Unit::Bytes), c.metric_type())?)?;
        }
        let objects = ConstCounter::new(s.compressed_objects.load(Ordering::Relaxed));
        objects.encode(encoder.encode_descriptor(
            "artifact_compressed_objects",
            "Artifacts this process stored compressed",
            None,
            objects.metric_type(),
        )?)?;
        let cpu = [
            (
                "artifact_compress_cpu",
                "CPU time compressing artifacts (with hashing the files read)",
                s.compress_cpu(),
            ),
            ("artifact_decompress_cpu", "CPU time decompressing artifacts", s.decompress_cpu()),
        ];
        for (name, help, d) in cpu {
            let c = ConstCounter::new(d.as_secs_f64());
            c.encode(encoder.encode_descriptor(name, help, Some(&Unit::Seconds), c.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_exposed_with_the_prefix() {
        let stats = Arc::new(CodecStats::default());
        stats.written_bytes.store(1000, Ordering::Relaxed);
        stats.stored_bytes.store(250, Ordering::Relaxed);
        let mut r = Registry::with_prefix("dockyard");
        CodecCollector::register(Arc::clone(&stats), &mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        assert!(text.contains("dockyard_artifact_written_bytes_total 1000"), "{text}");
        assert!(text.contains("dockyard_artifact_stored_bytes_total 250"), "{text}");
        assert!(text.contains("dockyard_artifact_compress_cpu_seconds_total"), "{text}");
    }
}
