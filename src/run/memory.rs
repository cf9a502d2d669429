//! Memory checked before it is spent: what loading a data set and running a spec would take,
//! against a limit taken from the machine (or `NOISESCOPE_MEMORY_LIMIT`), refused in one line
//! that names the size, the limit and how the limit was chosen.

use crate::backend::cpu::PreparedSet;
use crate::core::Precision;
use crate::data::Source;
use crate::error::{Error, Result};

use super::spec::RunSpec;

/// Sets the memory limit in bytes (k, M, G suffixes allowed) instead of the machine's.
pub const MEMORY_LIMIT_ENV: &str = "NOISESCOPE_MEMORY_LIMIT";

impl RunSpec {
    /// Loads the data once the memory it takes is known to fit, and refuses values the run's
    /// precision cannot hold. The app's worker and the CLI load through here.
    pub fn load_data(&self) -> Result<Source> {
        if let Some((rows, dim)) = self.data.peek_shape()? {
            // The data set in f64, and the CPU kernel's layouts of it in the run's precision.
            let layouts = match self.precision {
                Precision::F32 => PreparedSet::<f32>::bytes_at_most(rows, dim),
                Precision::F64 => PreparedSet::<f64>::bytes_at_most(rows, dim),
            };
            let needed = (rows as u64)
                .saturating_mul(dim as u64)
                .saturating_mul(8)
                .saturating_add(layouts);
            check_memory(
                needed,
                &format!(
                    "loading {} needs about {} ({rows} x {dim} values: the data set in f64 and \
                     the denoiser's layouts of it)",
                    self.data.label(),
                    bytes_text(needed)
                ),
                "use less data",
            )?;
        }
        let source = self.data.load()?;
        if let Source::Empirical(set) = &source {
            set.check_precision(self.precision, &self.data.label())?;
        }
        Ok(source)
    }

    /// Bytes a run on `dim`-dimensional data holds at its peak: the caller keeps every state
    /// (N+1) x B x D and every denoised state N x B x D in f64, the samplers and guidance work on
    /// about 8 batches more, and injected noise is read whole.
    pub fn run_memory_bytes(&self, dim: usize) -> u64 {
        let steps = self.schedule.steps as u64;
        let batch_values = (self.batch as u64).saturating_mul(dim as u64);
        let kept = (2 * steps + 1).saturating_mul(batch_values);
        // x, x_hat, D, d, the corrector's pair and the guidance's extra evaluations.
        let working = batch_values.saturating_mul(8);
        let mut injected = 0u64;
        if self.init_noise.is_some() {
            injected = batch_values;
        }
        if let Some(path) = &self.churn_noise
            && let Ok(header) = crate::data::npy::read_header(path)
        {
            injected = injected.saturating_add(header.count as u64);
        }
        kept.saturating_add(working)
            .saturating_add(injected)
            .saturating_mul(8)
    }

    /// Refuses, before it starts, a run that would not fit in memory (`run_memory_bytes`).
    pub fn check_run_memory(&self, dim: usize) -> Result<()> {
        let needed = self.run_memory_bytes(dim);
        check_memory(
            needed,
            &format!(
                "the run needs about {} (it keeps {} states and {} denoised states of {} x \
                 {dim} values in f64, and works on 8 more)",
                bytes_text(needed),
                self.schedule.steps + 1,
                self.schedule.steps,
                self.batch
            ),
            "lower --batch or --steps",
        )
    }
}

/// The memory a run may take, and how it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub how: String,
}

/// 90% of the memory available now (MemAvailable in /proc/meminfo), or NOISESCOPE_MEMORY_LIMIT;
/// `None` where neither is known (no check is made).
pub fn memory_limit() -> Result<Option<MemoryLimit>> {
    if let Ok(text) = std::env::var(MEMORY_LIMIT_ENV) {
        let bytes = parse_bytes(&text).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "{MEMORY_LIMIT_ENV}='{text}' is not a size (bytes, or a number with k, M or G)"
            ))
        })?;
        return Ok(Some(MemoryLimit {
            bytes,
            how: format!("set by {MEMORY_LIMIT_ENV}"),
        }));
    }
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return Ok(None);
    };
    let available_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    Ok(available_kb.map(|kb| {
        let available = kb.saturating_mul(1024);
        MemoryLimit {
            bytes: available / 10 * 9,
            how: format!(
                "90% of the {} this machine has available now, MemAvailable in /proc/meminfo; \
                 {MEMORY_LIMIT_ENV} sets another",
                bytes_text(available)
            ),
        }
    }))
}

/// "12", "300k", "1.5G" (powers of 1024) as bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * scale as f64) as u64)
}

/// Refuses `needed` bytes beyond the memory limit (`memory_limit`).
fn check_memory(needed: u64, what: &str, advice: &str) -> Result<()> {
    check_memory_against(needed, memory_limit()?.as_ref(), what, advice)
}

/// Refuses `needed` bytes beyond `limit` with one line: what needs it, the limit and how it was
/// chosen, and what to change.
fn check_memory_against(
    needed: u64,
    limit: Option<&MemoryLimit>,
    what: &str,
    advice: &str,
) -> Result<()> {
    match limit {
        Some(limit) if needed > limit.bytes => Err(Error::InvalidSpec(format!(
            "{what}, more than the limit of {} ({}); {advice}",
            bytes_text(limit.bytes),
            limit.how
        ))),
        _ => Ok(()),
    }
}

/// Bytes in the largest unit that keeps a digit before the point (powers of 1024).
fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_beyond_the_limit_is_refused_in_one_line() {
        let limit = MemoryLimit {
            bytes: 1 << 30,
            how: "by hand".into(),
        };
        assert!(check_memory_against(1 << 29, Some(&limit), "x", "y").is_ok());
        assert!(check_memory_against(u64::MAX, None, "x", "y").is_ok());
        let e = check_memory_against(
            3 << 30,
            Some(&limit),
            "the run needs 3.0 GiB",
            "lower --batch",
        );
        let e = e.map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| !e.contains('\n')
            && e.contains("1.0 GiB (by hand)")
            && e.contains("lower --batch")));
        assert_eq!(parse_bytes("1536"), Some(1536));
        assert_eq!(parse_bytes("1.5k"), Some(1536));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1M"), None);
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(3 << 20), "3.0 MiB");
    }

    #[test]
    fn the_run_memory_counts_every_kept_state() -> Result<()> {
        // Heun, 18 steps: 19 states + 18 denoised states kept, 8 working batches, all f64.
        let mut spec = RunSpec {
            batch: 1000,
            ..Default::default()
        };
        assert_eq!(spec.run_memory_bytes(64), (19 + 18 + 8) * 1000 * 64 * 8);
        spec.init_noise = Some("z.npy".into());
        assert_eq!(spec.run_memory_bytes(64), (19 + 18 + 8 + 1) * 1000 * 64 * 8);
        // The issue's --batch 10000000 on the digits: 214 GiB, never allocated.
        spec.batch = 10_000_000;
        spec.init_noise = None;
        assert!(spec.run_memory_bytes(64) > 200 << 30);
        // A small run fits on any machine.
        RunSpec::default().check_run_memory(2)
    }
}
