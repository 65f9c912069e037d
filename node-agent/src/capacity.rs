//! What this machine offers: CPU slots, memory, GPUs.

use std::process::Stdio;

use dockyard_proto::v1 as pb;

pub fn cpu_count() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// Total memory from /proc/meminfo (bytes), or 0 when unknown.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t))
        .unwrap_or(0)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// GPUs reported by `nvidia-smi`, or none when it is absent or fails.
pub async fn gpus() -> Vec<pb::Gpu> {
    let out = tokio::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        _ => Vec::new(),
    }
}

fn parse_nvidia_smi(text: &str) -> Vec<pb::Gpu> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let index = f.next()?.parse().ok()?;
            let model = f.next()?.to_string();
            let mib: u64 = f.next()?.parse().ok()?;
            Some(pb::Gpu {
                index,
                model,
                memory_bytes: mib * 1024 * 1024,
            })
        })
        .collect()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_and_nvidia_smi() {
        assert_eq!(
            parse_meminfo("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        let g = parse_nvidia_smi("0, NVIDIA H200, 143771\n1, NVIDIA H200, 143771\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].index, 1);
        assert_eq!(g[0].model, "NVIDIA H200");
        assert!(parse_nvidia_smi("garbage").is_empty());
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        assert!(cpu_count() >= 1);
        assert!(memory_bytes() > 0);
    }
}
