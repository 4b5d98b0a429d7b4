//! Prometheus histograms read back from a `/metrics` text: the cumulative buckets of
//! one metric (summed over replicas) and quantiles from them, interpolated within the
//! bucket the way PromQL's `histogram_quantile` does.

/// Cumulative buckets `(upper bound, count)`, sorted by bound, `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`.
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The `<name>_bucket` samples of `text` whose labels contain every one of
    /// `parts`; samples with the same `le` (several label sets) are added.
    pub fn parse(text: &str, name: &str, parts: &[&str]) -> Histogram {
        let bucket = format!("{name}_bucket{{");
        let mut h = Histogram::default();
        for line in text.lines().filter(|l| l.starts_with(&bucket)) {
            if !parts.iter().all(|p| line.contains(p)) {
                continue;
            }
            let Some(le) = line
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            let le = match le {
                "+Inf" => f64::INFINITY,
                v => match v.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else {
                continue;
            };
            h.add(le, count);
        }
        h
    }

    /// Adds another histogram's buckets (another replica's).
    pub fn merge(&mut self, other: &Histogram) {
        for &(le, count) in &other.buckets {
            self.add(le, count);
        }
    }

    fn add(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => {
                self.buckets.push((le, count));
                self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }

    /// How many observations.
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile (0..=1), linearly interpolated within its bucket (the lower
    /// bound of the first bucket is 0); `None` without observations, or the largest
    /// finite bound if the quantile falls in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP podtls_signer_decision_seconds x\n\
podtls_signer_decision_seconds_sum{signer=\"a\"} 1.0\n\
podtls_signer_decision_seconds_count{signer=\"a\"} 10\n\
podtls_signer_decision_seconds_bucket{le=\"0.001\",signer=\"a\"} 0\n\
podtls_signer_decision_seconds_bucket{le=\"0.002\",signer=\"a\"} 5\n\
podtls_signer_decision_seconds_bucket{le=\"0.004\",signer=\"a\"} 9\n\
podtls_signer_decision_seconds_bucket{le=\"+Inf\",signer=\"a\"} 10\n\
podtls_signer_decision_seconds_bucket{le=\"0.002\",signer=\"b\"} 7\n";

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::parse(TEXT, "podtls_signer_decision_seconds", &["signer=\"a\""]);
        assert_eq!(h.count(), 10.0);
        assert_eq!(h.quantile(0.5), Some(0.002));
        let p25 = h.quantile(0.25).expect("observations");
        assert!((p25 - 0.0015).abs() < 1e-12, "{p25}");
        let p70 = h.quantile(0.7).expect("observations");
        assert!((p70 - 0.003).abs() < 1e-12, "{p70}");
        assert_eq!(
            h.quantile(0.99),
            Some(0.004),
            "falls in +Inf: largest bound"
        );
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merge_adds_replicas_bucket_by_bucket() {
        let mut a = Histogram::parse(TEXT, "podtls_signer_decision_seconds", &["signer=\"a\""]);
        let b = Histogram::parse(TEXT, "podtls_signer_decision_seconds", &["signer=\"b\""]);
        a.merge(&b);
        assert_eq!(a.buckets[1], (0.002, 12.0));
        assert_eq!(a.count(), 10.0, "b has no +Inf sample in this text");
    }
}
